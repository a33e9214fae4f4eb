output "instance_id" {
  description = "ID of the stack's EC2 instance (also the target of `aws ssm start-session`); null in topology \"ha\" (see hosts)."
  value       = one(aws_instance.stack[*].id)
}

output "public_ip" {
  description = "Elastic IP of the VM; stays the same when the instance is replaced. Null in topology \"ha\" (see load_balancer_dns_name)."
  value       = one(aws_eip.stack[*].public_ip)
}

output "ssh_user" {
  description = "Login user of the Debian image, for Ansible's ansible_user."
  value       = local.ssh_user
}

output "ssh_command" {
  description = "How to log in to the VM (from one of admin_cidrs); in topology \"ha\", to the first control host, the jump host to the others."
  value       = "ssh ${local.ssh_user}@${local.ha ? aws_eip.ha_control["control-1"].public_ip : aws_eip.stack[0].public_ip}"
}

output "grafana_url" {
  description = "Grafana behind the TLS reverse proxy (reachable from allowed_cidrs)."
  value       = "https://${local.web_address}/grafana/"
}

output "airflow_url" {
  description = "Airflow UI behind the TLS reverse proxy (reachable from allowed_cidrs)."
  value       = "https://${local.web_address}/airflow/"
}

output "data_volume_id" {
  description = "EBS volume holding the stack's data, mounted at data_mount_path; null in topology \"ha\" (each time-series host has its own)."
  value       = one(aws_ebs_volume.data[*].id)
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

output "topology" {
  description = "The topology applied: \"single\" or \"ha\"."
  value       = var.topology
}

output "hosts" {
  description = "Topology \"ha\": every host by name, with its tier (control, worker, tsdb), zone and addresses. Empty for \"single\"."
  value = {
    for name, instance in aws_instance.ha : name => {
      tier       = instance.tags["Tier"]
      zone       = instance.availability_zone
      private_ip = instance.private_ip
      public_ip  = try(aws_eip.ha_control[name].public_ip, null)
    }
  }
}

output "load_balancer_dns_name" {
  description = "Topology \"ha\": the address people use (80/443 to the control hosts' proxies); null for \"single\"."
  value       = one(aws_lb.ha[*].dns_name)
}

output "db_endpoint" {
  description = "Topology \"ha\": host:port of Airflow's RDS database (TLS required); null for \"single\"."
  value       = one(aws_db_instance.airflow[*].endpoint)
}

output "db_master_secret_arn" {
  description = "Topology \"ha\": the Secrets Manager secret RDS keeps the database's master password in; null for \"single\"."
  value       = try(aws_db_instance.airflow[0].master_user_secret[0].secret_arn, null)
}
