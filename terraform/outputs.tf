output "instance_id" {
  description = "ID of the stack's EC2 instance (also the target of `aws ssm start-session`)."
  value       = aws_instance.stack.id
}

output "public_ip" {
  description = "Elastic IP of the VM; stays the same when the instance is replaced."
  value       = aws_eip.stack.public_ip
}

output "ssh_user" {
  description = "Login user of the Debian image, for Ansible's ansible_user."
  value       = local.ssh_user
}

output "ssh_command" {
  description = "How to log in to the VM (from one of admin_cidrs)."
  value       = "ssh ${local.ssh_user}@${aws_eip.stack.public_ip}"
}

output "grafana_url" {
  description = "Grafana behind the TLS reverse proxy (reachable from allowed_cidrs)."
  value       = "https://${aws_eip.stack.public_ip}/grafana/"
}

output "airflow_url" {
  description = "Airflow UI behind the TLS reverse proxy (reachable from allowed_cidrs)."
  value       = "https://${aws_eip.stack.public_ip}/airflow/"
}

output "data_volume_id" {
  description = "EBS volume holding the stack's data, mounted at data_mount_path."
  value       = aws_ebs_volume.data.id
}

output "data_mount_path" {
  description = "Where the data volume is mounted on the VM; give it to Ansible as the data directory."
  value       = var.data_mount_path
}

output "security_group_id" {
  description = "Security group of the VM (SSH from admin_cidrs, 80/443 from allowed_cidrs)."
  value       = aws_security_group.stack.id
}

output "backup_bucket" {
  description = "S3 bucket the backups are copied to (Ansible's backup_s3_bucket; the inventory reads it from the instance tag); null without one."
  value       = var.backup_bucket_enabled ? aws_s3_bucket.backup[0].id : null
}
