# Topology "ha" applied against moto (AWS_ENDPOINT_URL): the tiers spread over two
# zones, only the flows between tiers that talk, and RDS Multi-AZ, encrypted and private.
provider "aws" {
  region = "eu-west-1"
}

variables {
  name                        = "tftest-ha"
  topology                    = "ha"
  ha_worker_count             = 3
  ami_id                      = "ami-03cf127a"
  admin_cidrs                 = ["203.0.113.7/32"]
  allowed_cidrs               = ["192.0.2.0/24"]
  ssh_public_key              = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFU6OYgQo2vENSCqxSLBaXk8rx0b1LjC/KBS6CPli5SN test@example"
  ha_deletion_protection      = false
  backup_bucket_force_destroy = true
}

run "apply_ha" {
  command = apply

  assert {
    condition     = output.topology == "ha" && output.instance_id == null && output.public_ip == null && output.data_volume_id == null
    error_message = "topology \"ha\" created the single VM"
  }
  assert {
    condition = alltrue([
      for tier, count in { control = 2, worker = 3, tsdb = 2 } :
      length([for host in output.hosts : host if host.tier == tier]) == count
    ])
    error_message = "the hosts per tier differ from 2 control, 3 worker, 2 tsdb: ${jsonencode(output.hosts)}"
  }
  assert {
    condition = alltrue([
      for tier in ["control", "worker", "tsdb"] :
      toset([for host in output.hosts : host.zone if host.tier == tier]) == toset(["eu-west-1a", "eu-west-1b"])
    ])
    error_message = "a tier is not spread over both zones: ${jsonencode(output.hosts)}"
  }
  assert {
    condition     = alltrue([for host in output.hosts : (host.public_ip != null) == (host.tier == "control")])
    error_message = "only the control hosts may have a public address: ${jsonencode(output.hosts)}"
  }
  assert {
    condition     = alltrue([for subnet in aws_subnet.ha_private : !subnet.map_public_ip_on_launch]) && length(aws_nat_gateway.ha) == 2
    error_message = "the private subnets hand out public addresses, or a zone has no NAT gateway of its own"
  }
  assert {
    condition = alltrue([
      for name, host in aws_instance.ha :
      host.tags["SshJump"] == (host.tags["Tier"] == "control" ? "" : "admin@${aws_eip.ha_control["control-1"].public_ip}")
    ])
    error_message = "the private hosts must be reached through the first control host (tag SshJump)"
  }
  assert {
    condition = alltrue([
      for name, host in aws_instance.ha :
      host.metadata_options[0].http_tokens == "required"
      && host.metadata_options[0].http_put_response_hop_limit == (host.tags["Tier"] == "tsdb" ? 2 : 1)
      && host.iam_instance_profile == (host.tags["Tier"] == "tsdb" ? "tftest-ha-instance" : "tftest-ha-node")
      && host.root_block_device[0].encrypted
    ])
    error_message = "only the time-series hosts (backups to S3) may reach the instance role; IMDSv2 and encryption everywhere"
  }
  assert {
    condition = alltrue([for rule in aws_vpc_security_group_ingress_rule.ha : rule.cidr_ipv4 == null && rule.referenced_security_group_id != null]) && toset([
      for rule in aws_vpc_security_group_ingress_rule.ha : rule.security_group_id
    ]) == toset(values(local.ha_security_groups))
    error_message = "a tier admits traffic from addresses instead of from the tiers that talk to it"
  }
  assert {
    condition = [
      for rule in aws_vpc_security_group_ingress_rule.ha : "${rule.ip_protocol}/${rule.from_port}" if rule.security_group_id == aws_security_group.ha["db"].id
      ] == ["tcp/3306"] && one([
        for rule in aws_vpc_security_group_ingress_rule.ha : rule.referenced_security_group_id if rule.security_group_id == aws_security_group.ha["db"].id
    ]) == aws_security_group.stack.id
    error_message = "the database must admit MySQL from the control hosts only"
  }
  assert {
    condition = (
      aws_db_instance.airflow[0].multi_az
      && aws_db_instance.airflow[0].storage_encrypted
      && !aws_db_instance.airflow[0].publicly_accessible
      && aws_db_instance.airflow[0].backup_retention_period == 7
      && aws_db_instance.airflow[0].manage_master_user_password
      && output.db_master_secret_arn != null
      && toset(aws_db_subnet_group.airflow[0].subnet_ids) == toset(aws_subnet.ha_private[*].id)
    )
    error_message = "Airflow's database must be Multi-AZ, encrypted, private, backed up, with RDS keeping its password"
  }
  assert {
    condition     = anytrue([for p in aws_db_parameter_group.airflow[0].parameter : p.name == "require_secure_transport" && p.value == "1"])
    error_message = "the database must refuse connections without TLS"
  }
  assert {
    condition = toset([for rule in aws_vpc_security_group_ingress_rule.ha_health_check : "${rule.from_port}/${rule.cidr_ipv4}"]) == toset([
      for pair in setproduct([80, 443], [aws_subnet.public.cidr_block, aws_subnet.ha_public[0].cidr_block]) : "${pair[0]}/${pair[1]}"
    ])
    error_message = "the load balancer's health checks must reach the proxies from the public subnets, and only from there"
  }
  assert {
    condition = (
      aws_lb.ha[0].load_balancer_type == "network" && !aws_lb.ha[0].internal && aws_lb.ha[0].enable_cross_zone_load_balancing
      && length(aws_lb_target_group_attachment.ha) == 4
      && output.grafana_url == "https://${aws_lb.ha[0].dns_name}/grafana/"
    )
    error_message = "people must reach both control hosts (80 and 443) through the load balancer"
  }
}
