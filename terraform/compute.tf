resource "aws_key_pair" "admin" {
  key_name   = "${var.name}-admin"
  public_key = trimspace(var.ssh_public_key)

  tags = local.tags
}

# The one VM of topology "single"; "ha" has its tiers in ha.tf.
resource "aws_instance" "stack" {
  count = local.ha ? 0 : 1

  ami                    = local.ami_id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public.id
  vpc_security_group_ids = [aws_security_group.stack.id]
  key_name               = aws_key_pair.admin.key_name
  iam_instance_profile   = aws_iam_instance_profile.stack.name
  ebs_optimized          = true
  # checkov:skip=CKV_AWS_126: host metrics go to VictoriaMetrics via node_exporter; paid 1-minute CloudWatch metrics would duplicate them
  monitoring = false

  # cloud-init only formats and mounts the data volume: that is AWS-specific
  # (the device is found by its EBS volume id) and must exist before any
  # database writes. Everything else is Ansible's.
  user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    volume_id  = aws_ebs_volume.data[0].id
    mount_path = var.data_mount_path
  })

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
    # The backup container reaches the instance profile through the Docker
    # bridge, one hop more; without the bucket, containers get no credentials.
    http_put_response_hop_limit = var.backup_bucket_enabled ? 2 : 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-root" })
  }

  # SshUser and BackupBucket are read by the Ansible inventory (ansible/inventories/aws).
  tags = merge(local.tags, {
    Name         = var.name
    SshUser      = local.ssh_user
    BackupBucket = var.backup_bucket_enabled ? aws_s3_bucket.backup[0].id : ""
  })

  lifecycle {
    # A newer Debian AMI must not replace the VM on a routine apply.
    ignore_changes = [ami]
  }
}

# The databases' data lives here, not on the root volume, so it survives
# instance replacement; destroying the stack snapshots it first.
resource "aws_ebs_volume" "data" {
  count = local.ha ? 0 : 1

  # checkov:skip=CKV_AWS_189: encrypted with the account's aws/ebs key; a customer-managed key adds cost and a key policy without protecting more here
  availability_zone = aws_subnet.public.availability_zone
  size              = var.data_volume_size_gb
  type              = "gp3"
  encrypted         = true
  final_snapshot    = true

  tags = merge(local.tags, { Name = "${var.name}-data" })
}

resource "aws_volume_attachment" "data" {
  count = local.ha ? 0 : 1

  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[0].id
  instance_id = aws_instance.stack[0].id
}

resource "aws_eip" "stack" {
  count = local.ha ? 0 : 1

  domain = "vpc"

  tags = merge(local.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_eip_association" "stack" {
  count = local.ha ? 0 : 1

  allocation_id = aws_eip.stack[0].id
  instance_id   = aws_instance.stack[0].id
}

# State from before the topology input: the single VM's resources keep their place.
moved {
  from = aws_instance.stack
  to   = aws_instance.stack[0]
}

moved {
  from = aws_ebs_volume.data
  to   = aws_ebs_volume.data[0]
}

moved {
  from = aws_volume_attachment.data
  to   = aws_volume_attachment.data[0]
}

moved {
  from = aws_eip.stack
  to   = aws_eip.stack[0]
}

moved {
  from = aws_eip_association.stack
  to   = aws_eip_association.stack[0]
}
