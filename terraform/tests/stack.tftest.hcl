# Applies the whole configuration against moto (AWS_ENDPOINT_URL) and reads the
# resources back through the API. moto has no Debian AMIs, so ami_id is given.
# The read-back module needs a region too; the same one as the configuration's.
provider "aws" {
  region = "eu-west-1"
}

variables {
  name           = "tftest-stack"
  ami_id         = "ami-03cf127a"
  admin_cidrs    = ["203.0.113.7/32", "198.51.100.0/24"]
  allowed_cidrs  = ["192.0.2.0/24"]
  ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFU6OYgQo2vENSCqxSLBaXk8rx0b1LjC/KBS6CPli5SN test@example"
  tags           = { Owner = "tests" }
}

run "apply" {
  command = apply

  assert {
    condition     = can(regex("^i-[0-9a-f]+$", output.instance_id))
    error_message = "instance_id is not an EC2 instance id: ${output.instance_id}"
  }
  assert {
    condition     = can(cidrhost("${output.public_ip}/32", 0))
    error_message = "public_ip is not an IPv4 address: ${output.public_ip}"
  }
  assert {
    condition     = output.ssh_user == "admin" && output.ssh_command == "ssh admin@${output.public_ip}"
    error_message = "ssh_command is wrong: ${output.ssh_command}"
  }
  assert {
    condition     = output.grafana_url == "https://${output.public_ip}/grafana/" && output.airflow_url == "https://${output.public_ip}/airflow/"
    error_message = "the UI URLs are wrong: ${output.grafana_url} ${output.airflow_url}"
  }
  assert {
    condition     = can(regex("^vol-[0-9a-f]+$", output.data_volume_id))
    error_message = "data_volume_id is not a volume id: ${output.data_volume_id}"
  }
  assert {
    condition = (
      !strcontains(aws_iam_role_policy.session_manager.policy, "Parameter")
      && !strcontains(aws_iam_role_policy.session_manager.policy, "ssm:*")
      && jsondecode(aws_iam_role_policy.session_manager.policy).Statement[0].Action == "ssm:UpdateInstanceInformation"
    )
    error_message = "the instance role grants more than Session Manager: ${aws_iam_role_policy.session_manager.policy}"
  }
}

run "read_back" {
  command = apply

  module {
    source = "./tests/inspect"
  }

  variables {
    security_group_id = run.apply.security_group_id
    instance_id       = run.apply.instance_id
    data_volume_id    = run.apply.data_volume_id
    public_ip         = run.apply.public_ip
  }

  assert {
    condition = output.ingress == sort([
      "tcp/22-22/198.51.100.0/24",
      "tcp/22-22/203.0.113.7/32",
      "tcp/443-443/192.0.2.0/24",
      "tcp/80-80/192.0.2.0/24",
    ])
    error_message = "inbound rules differ from the design: ${jsonencode(output.ingress)}"
  }
  assert {
    condition     = output.egress == tolist(["-1/0.0.0.0/0"])
    error_message = "outbound rules differ from the design: ${jsonencode(output.egress)}"
  }
  assert {
    condition     = output.instance.metadata_options[0].http_tokens == "required" && output.instance.metadata_options[0].http_put_response_hop_limit == 2
    error_message = "IMDSv2 is not required on the instance, or its hop limit keeps the backup container from the instance profile"
  }
  assert {
    condition     = output.root_volume.encrypted && output.root_volume.volume_type == "gp3"
    error_message = "the root volume is not an encrypted gp3 volume"
  }
  assert {
    condition     = output.data_volume.encrypted && output.data_volume.volume_type == "gp3" && output.data_volume.size == 20
    error_message = "the data volume is not an encrypted 20 GiB gp3 volume"
  }
  assert {
    condition     = contains([for d in output.instance.ebs_block_device : d.volume_id], run.apply.data_volume_id)
    error_message = "the data volume is not attached to the instance"
  }
  assert {
    condition     = output.eip.instance_id == run.apply.instance_id && output.instance.public_ip == run.apply.public_ip
    error_message = "the Elastic IP is not associated with the instance"
  }
  assert {
    condition     = output.instance.iam_instance_profile == "tftest-stack-instance"
    error_message = "the instance has no instance profile"
  }
  assert {
    condition = alltrue([
      for resource_tags in [output.instance.tags, output.data_volume.tags, output.eip.tags] :
      resource_tags["Project"] == "btc-usd-stack" && resource_tags["Stack"] == "tftest-stack" && resource_tags["ManagedBy"] == "terraform" && resource_tags["Owner"] == "tests"
    ])
    error_message = "tags are missing from the instance, data volume or Elastic IP"
  }
  assert {
    condition     = output.instance.tags["SshUser"] == "admin" && output.instance.tags["Name"] == "tftest-stack"
    error_message = "the instance lacks the Name/SshUser tags the Ansible inventory uses"
  }
  assert {
    condition     = startswith(run.apply.backup_bucket, "tftest-stack-backup-") && output.instance.tags["BackupBucket"] == run.apply.backup_bucket
    error_message = "the backup bucket is missing, or the instance's BackupBucket tag does not name it"
  }
}
