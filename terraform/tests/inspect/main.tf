# Reads the created resources back from the (emulated) AWS API, so the tests
# assert on what exists, not on what the configuration asked for.
terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "security_group_id" {
  description = "Security group to list the rules of."
  type        = string
}

variable "instance_id" {
  description = "Instance to read back."
  type        = string
}

variable "data_volume_id" {
  description = "Data volume to read back."
  type        = string
}

variable "public_ip" {
  description = "Elastic IP to read back."
  type        = string
}

data "aws_vpc_security_group_rules" "stack" {
  filter {
    name   = "group-id"
    values = [var.security_group_id]
  }
}

data "aws_vpc_security_group_rule" "each" {
  for_each               = toset(data.aws_vpc_security_group_rules.stack.ids)
  security_group_rule_id = each.value
}

data "aws_instance" "stack" {
  instance_id = var.instance_id
}

data "aws_ebs_volume" "data" {
  filter {
    name   = "volume-id"
    values = [var.data_volume_id]
  }
}

data "aws_ebs_volume" "root" {
  filter {
    name   = "volume-id"
    values = [one([for d in data.aws_instance.stack.root_block_device : d.volume_id])]
  }
}

data "aws_eip" "stack" {
  public_ip = var.public_ip
}

output "ingress" {
  description = "Inbound rules as \"protocol/from-to/cidr\"."
  value       = sort([for r in data.aws_vpc_security_group_rule.each : "${r.ip_protocol}/${r.from_port}-${r.to_port}/${r.cidr_ipv4}" if !r.is_egress])
}

output "egress" {
  description = "Outbound rules as \"protocol/cidr\"."
  value       = sort([for r in data.aws_vpc_security_group_rule.each : "${r.ip_protocol}/${r.cidr_ipv4}" if r.is_egress])
}

output "instance" {
  description = "The instance as the API describes it."
  value       = data.aws_instance.stack
}

output "data_volume" {
  description = "The data volume as the API describes it."
  value       = data.aws_ebs_volume.data
}

output "root_volume" {
  description = "The root volume as the API describes it."
  value       = data.aws_ebs_volume.root
}

output "eip" {
  description = "The Elastic IP as the API describes it."
  value       = data.aws_eip.stack
}
