locals {
  tags = merge(
    {
      Project   = "btc-usd-stack"
      Stack     = var.name
      ManagedBy = "terraform"
    },
    var.tags,
  )

  # Debian's cloud images log in as "admin".
  ssh_user = "admin"
  ami_id   = coalesce(var.ami_id, try(data.aws_ami.debian[0].id, null))
  # Where people open the UIs: the VM, or the load balancer in front of the control hosts.
  web_address = local.ha ? aws_lb.ha[0].dns_name : aws_eip.stack[0].public_ip
}

data "aws_partition" "current" {}

# Latest official Debian 12 image (owner: Debian's AWS account).
data "aws_ami" "debian" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["136693071363"]

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}
