# Bad inputs are rejected at plan time with the variable's own message.
variables {
  ami_id         = "ami-03cf127a"
  admin_cidrs    = ["203.0.113.7/32"]
  allowed_cidrs  = ["0.0.0.0/0"]
  ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFU6OYgQo2vENSCqxSLBaXk8rx0b1LjC/KBS6CPli5SN test@example"
}

run "good_inputs_plan" {
  command = plan

  assert {
    condition     = aws_instance.stack[0].metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required"
  }
  assert {
    condition     = aws_instance.stack[0].root_block_device[0].encrypted && aws_ebs_volume.data[0].encrypted
    error_message = "volumes must be encrypted"
  }
  assert {
    condition     = !aws_subnet.public.map_public_ip_on_launch
    error_message = "the subnet must not hand out public IPs; the Elastic IP is the only one"
  }
  assert {
    condition = can(yamldecode(templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      volume_id  = "vol-0123456789abcdef0"
      mount_path = "/srv/btc-usd-stack"
    })))
    error_message = "the cloud-init template does not render to valid YAML"
  }
  assert {
    condition = strcontains(templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      volume_id  = "vol-0123456789abcdef0"
      mount_path = "/srv/btc-usd-stack"
    }), "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0")
    error_message = "cloud-init must find the data volume by its EBS id"
  }
}

run "without_backup_bucket" {
  command = plan

  variables {
    backup_bucket_enabled = false
  }

  assert {
    condition     = length(aws_s3_bucket.backup) == 0 && length(aws_iam_role_policy.backup) == 0
    error_message = "backup_bucket_enabled = false must create no bucket and no S3 permission"
  }
  assert {
    condition     = aws_instance.stack[0].metadata_options[0].http_put_response_hop_limit == 1
    error_message = "without backups to S3, containers must not reach the instance profile (hop limit 1)"
  }
}

run "backup_retention_zero" {
  command = plan

  variables {
    backup_noncurrent_days = 0
  }

  expect_failures = [var.backup_noncurrent_days]
}

run "ssh_open_to_the_world" {
  command = plan
  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "ssh_open_to_a_huge_range" {
  command = plan
  variables {
    admin_cidrs = ["203.0.113.7/32", "64.0.0.0/2"]
  }
  expect_failures = [var.admin_cidrs]
}

run "empty_admin_cidrs" {
  command = plan
  variables {
    admin_cidrs = []
  }
  expect_failures = [var.admin_cidrs]
}

run "admin_cidr_not_a_cidr" {
  command = plan
  variables {
    admin_cidrs = ["my-laptop"]
  }
  expect_failures = [var.admin_cidrs]
}

run "private_key_instead_of_public" {
  command = plan
  variables {
    ssh_public_key = "-----BEGIN OPENSSH PRIVATE KEY-----"
  }
  expect_failures = [var.ssh_public_key]
}

run "truncated_public_key" {
  command = plan
  variables {
    ssh_public_key = "ssh-ed25519 AAAA"
  }
  expect_failures = [var.ssh_public_key]
}

run "malformed_ami" {
  command = plan
  variables {
    ami_id = "debian-12"
  }
  expect_failures = [var.ami_id]
}

run "malformed_allowed_cidr" {
  command = plan
  variables {
    allowed_cidrs = ["0.0.0.0/33"]
  }
  expect_failures = [var.allowed_cidrs]
}

run "unknown_topology" {
  command = plan
  variables {
    topology = "cluster"
  }
  expect_failures = [var.topology]
}

run "ha_with_one_control_host" {
  command = plan
  variables {
    topology         = "ha"
    ha_control_count = 1
  }
  expect_failures = [var.ha_control_count]
}

run "ha_zones_of_another_region" {
  command = plan
  variables {
    topology              = "ha"
    ha_availability_zones = ["us-east-1a", "us-east-1b"]
  }
  expect_failures = [var.ha_availability_zones]
}

run "ha_zones_the_same" {
  command = plan
  variables {
    topology              = "ha"
    ha_availability_zones = ["eu-west-1a", "eu-west-1a"]
  }
  expect_failures = [var.ha_availability_zones]
}

run "ha_plans_no_single_vm" {
  command = plan
  variables {
    topology = "ha"
  }

  assert {
    condition     = length(aws_instance.stack) == 0 && length(aws_eip.stack) == 0 && length(aws_ebs_volume.data) == 0
    error_message = "topology \"ha\" must not create the single VM"
  }
  assert {
    condition     = [for name, host in local.ha_hosts : host.tier] == ["control", "control", "tsdb", "tsdb", "worker", "worker"]
    error_message = "topology \"ha\" must plan 2 control, 2 worker (the defaults) and 2 time-series hosts"
  }
}
