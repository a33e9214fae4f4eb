# Topology "ha" (docs/scaling.md): control hosts in two public subnets behind a
# network load balancer, workers and the two time-series hosts in private subnets
# with a NAT gateway per zone, and Airflow's database on RDS Multi-AZ.

locals {
  ha = var.topology == "ha"

  ha_zones = length(var.ha_availability_zones) > 0 ? var.ha_availability_zones : ["${var.aws_region}a", "${var.aws_region}b"]
  # Zone a's public subnet is the single topology's; zone b's is ha_public.
  ha_public_subnets     = concat([aws_subnet.public], aws_subnet.ha_public)
  ha_public_subnet_ids  = local.ha_public_subnets[*].id
  ha_private_subnet_ids = aws_subnet.ha_private[*].id

  ha_security_groups = local.ha ? {
    control = aws_security_group.stack.id
    worker  = aws_security_group.ha["worker"].id
    tsdb    = aws_security_group.ha["tsdb"].id
    db      = aws_security_group.ha["db"].id
  } : {}

  # Every flow between tiers, and nothing else: source tier -> destination tier.
  ha_flows = {
    "worker-control-8443"  = { from = "worker", to = "control", protocol = "tcp", port = 8443, description = "Edge workers to Airflow's execution and worker API (TLS, internal listener of the proxy)" }
    "control-tsdb-8428"    = { from = "control", to = "tsdb", protocol = "tcp", port = 8428, description = "Grafana and vmauth to VictoriaMetrics" }
    "worker-tsdb-8428"     = { from = "worker", to = "tsdb", protocol = "tcp", port = 8428, description = "vmagent writes and the DAG's read-back to VictoriaMetrics" }
    "tsdb-tsdb-9093"       = { from = "tsdb", to = "tsdb", protocol = "tcp", port = 9093, description = "every vmalert notifies both Alertmanagers" }
    "control-tsdb-9093"    = { from = "control", to = "tsdb", protocol = "tcp", port = 9093, description = "Grafana sends its alerts to both Alertmanagers" }
    "tsdb-tsdb-9094-tcp"   = { from = "tsdb", to = "tsdb", protocol = "tcp", port = 9094, description = "Alertmanager cluster gossip (TCP)" }
    "tsdb-tsdb-9094-udp"   = { from = "tsdb", to = "tsdb", protocol = "udp", port = 9094, description = "Alertmanager cluster gossip (UDP)" }
    "tsdb-control-9100"    = { from = "tsdb", to = "control", protocol = "tcp", port = 9100, description = "host metrics scraped by VictoriaMetrics" }
    "tsdb-worker-9100"     = { from = "tsdb", to = "worker", protocol = "tcp", port = 9100, description = "host metrics scraped by VictoriaMetrics" }
    "tsdb-tsdb-9100"       = { from = "tsdb", to = "tsdb", protocol = "tcp", port = 9100, description = "host metrics scraped by VictoriaMetrics" }
    "control-worker-22"    = { from = "control", to = "worker", protocol = "tcp", port = 22, description = "Ansible over SSH, jumping through a control host" }
    "control-tsdb-22"      = { from = "control", to = "tsdb", protocol = "tcp", port = 22, description = "Ansible over SSH, jumping through a control host" }
    "control-db-3306"      = { from = "control", to = "db", protocol = "tcp", port = 3306, description = "Airflow's scheduler, DAG processor and API server to MySQL (TLS required)" }
    "control-control-8443" = { from = "control", to = "control", protocol = "tcp", port = 8443, description = "Airflow's execution API across control hosts" }
  }

  ha_hosts = local.ha ? merge(
    { for i in range(var.ha_control_count) : "control-${i + 1}" => { tier = "control", zone = i % 2 } },
    { for i in range(var.ha_worker_count) : "worker-${i + 1}" => { tier = "worker", zone = i % 2 } },
    { for i in range(2) : "tsdb-${i + 1}" => { tier = "tsdb", zone = i } },
  ) : {}
  # Ansible reaches the private hosts through the first control host (ansible/inventories/aws).
  ha_jump = local.ha ? "${local.ssh_user}@${aws_eip.ha_control["control-1"].public_ip}" : ""
}

resource "aws_subnet" "ha_public" {
  count = local.ha ? 1 : 0

  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 1)
  availability_zone       = local.ha_zones[1]
  map_public_ip_on_launch = false

  tags = merge(local.tags, { Name = "${var.name}-public-2" })
}

resource "aws_route_table_association" "ha_public" {
  count = local.ha ? 1 : 0

  subnet_id      = aws_subnet.ha_public[0].id
  route_table_id = aws_route_table.public.id
}

resource "aws_subnet" "ha_private" {
  count = local.ha ? 2 : 0

  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 10 + count.index)
  availability_zone = local.ha_zones[count.index]

  tags = merge(local.tags, { Name = "${var.name}-private-${count.index + 1}" })
}

# One NAT gateway per zone: a zone's private hosts keep their way out (apt, PyPI,
# the rate APIs) when the other zone fails.
resource "aws_eip" "ha_nat" {
  count = local.ha ? 2 : 0

  domain = "vpc"

  tags = merge(local.tags, { Name = "${var.name}-nat-${count.index + 1}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "ha" {
  count = local.ha ? 2 : 0

  allocation_id = aws_eip.ha_nat[count.index].id
  subnet_id     = local.ha_public_subnet_ids[count.index]

  tags = merge(local.tags, { Name = "${var.name}-${count.index + 1}" })
}

resource "aws_route_table" "ha_private" {
  count = local.ha ? 2 : 0

  vpc_id = aws_vpc.this.id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.ha[count.index].id
  }

  tags = merge(local.tags, { Name = "${var.name}-private-${count.index + 1}" })
}

resource "aws_route_table_association" "ha_private" {
  count = local.ha ? 2 : 0

  subnet_id      = aws_subnet.ha_private[count.index].id
  route_table_id = aws_route_table.ha_private[count.index].id
}

# The control tier uses the single VM's group (SSH from admins, web from allowed
# networks); the other tiers take nothing from outside the VPC.
resource "aws_security_group" "ha" {
  # checkov:skip=CKV2_AWS_5: attached to the worker and time-series instances and the database through local.ha_security_groups
  for_each = local.ha ? toset(["worker", "tsdb", "db"]) : toset([])

  name        = "${var.name}-${each.key}"
  description = "btc-usd-stack ${each.key} tier: only the flows of the tiers that talk to it"
  vpc_id      = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_security_group_ingress_rule" "ha" {
  for_each = local.ha ? local.ha_flows : {}

  security_group_id            = local.ha_security_groups[each.value.to]
  referenced_security_group_id = local.ha_security_groups[each.value.from]
  description                  = each.value.description
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port

  tags = local.tags
}

# The load balancer's health checks come from its nodes in the public subnets.
resource "aws_vpc_security_group_ingress_rule" "ha_health_check" {
  for_each = local.ha ? {
    for pair in setproduct(["80", "443"], range(2)) : "${pair[0]}-${pair[1]}" => { port = tonumber(pair[0]), zone = pair[1] }
  } : {}

  security_group_id = aws_security_group.stack.id
  description       = "Load balancer health checks to the proxy"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = local.ha_public_subnets[each.value.zone].cidr_block

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "ha" {
  for_each = local.ha ? toset(["worker", "tsdb"]) : toset([])

  security_group_id = aws_security_group.ha[each.key].id
  description       = "Outbound through the NAT gateway: apt, PyPI, container registries, rate APIs, SMTP relay"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = local.tags
}

# Control and worker hosts need no AWS API but Session Manager's; the time-series
# hosts keep the single VM's role, which may write the backup bucket.
resource "aws_iam_role" "ha_node" {
  count = local.ha ? 1 : 0

  name               = "${var.name}-node"
  description        = "btc-usd-stack control and worker hosts: SSM Session Manager only"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy" "ha_node_session_manager" {
  count = local.ha ? 1 : 0

  name   = "${var.name}-node-session-manager"
  role   = aws_iam_role.ha_node[0].id
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_iam_instance_profile" "ha_node" {
  count = local.ha ? 1 : 0

  name = "${var.name}-node"
  role = aws_iam_role.ha_node[0].name

  tags = local.tags
}

resource "aws_instance" "ha" {
  for_each = local.ha_hosts

  ami                    = local.ami_id
  instance_type          = var.ha_instance_types[each.value.tier]
  subnet_id              = each.value.tier == "control" ? local.ha_public_subnet_ids[each.value.zone] : local.ha_private_subnet_ids[each.value.zone]
  vpc_security_group_ids = [local.ha_security_groups[each.value.tier]]
  key_name               = aws_key_pair.admin.key_name
  iam_instance_profile   = each.value.tier == "tsdb" ? aws_iam_instance_profile.stack.name : aws_iam_instance_profile.ha_node[0].name
  ebs_optimized          = true
  # checkov:skip=CKV_AWS_126: host metrics go to VictoriaMetrics via node_exporter; paid 1-minute CloudWatch metrics would duplicate them
  monitoring = false

  user_data = each.value.tier == "tsdb" ? templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    volume_id  = aws_ebs_volume.ha_tsdb[each.key].id
    mount_path = var.data_mount_path
  }) : null

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
    # Only the time-series hosts' backup container needs the instance role (one hop more).
    http_put_response_hop_limit = each.value.tier == "tsdb" && var.backup_bucket_enabled ? 2 : 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-${each.key}-root" })
  }

  # Tier, SshUser, SshJump and BackupBucket are read by the Ansible inventory.
  tags = merge(local.tags, {
    Name         = "${var.name}-${each.key}"
    Topology     = "ha"
    Tier         = each.value.tier
    SshUser      = local.ssh_user
    SshJump      = each.value.tier == "control" ? "" : local.ha_jump
    BackupBucket = each.value.tier == "tsdb" && var.backup_bucket_enabled ? aws_s3_bucket.backup[0].id : ""
  })

  lifecycle {
    ignore_changes = [ami]
  }
}

# The time series outlive a time-series host's replacement, as on the single VM.
resource "aws_ebs_volume" "ha_tsdb" {
  # checkov:skip=CKV_AWS_189: encrypted with the account's aws/ebs key; a customer-managed key adds cost and a key policy without protecting more here
  for_each = { for name, host in local.ha_hosts : name => host if host.tier == "tsdb" }

  availability_zone = local.ha_zones[each.value.zone]
  size              = var.data_volume_size_gb
  type              = "gp3"
  encrypted         = true
  final_snapshot    = true

  tags = merge(local.tags, { Name = "${var.name}-${each.key}-data" })
}

resource "aws_volume_attachment" "ha_tsdb" {
  for_each = aws_ebs_volume.ha_tsdb

  device_name = "/dev/sdf"
  volume_id   = each.value.id
  instance_id = aws_instance.ha[each.key].id
}

resource "aws_eip" "ha_control" {
  for_each = { for name, host in local.ha_hosts : name => host if host.tier == "control" }

  domain = "vpc"

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_eip_association" "ha_control" {
  for_each = aws_eip.ha_control

  allocation_id = each.value.id
  instance_id   = aws_instance.ha[each.key].id
}

# People reach the UIs through one address that fails over between the control
# hosts; TLS ends in each host's proxy (TCP passes through, client addresses kept).
resource "aws_lb" "ha" {
  # checkov:skip=CKV_AWS_91: access logs would need a log bucket; the proxies on the control hosts log every request
  count = local.ha ? 1 : 0

  name                             = trimsuffix(substr("${var.name}-web", 0, 32), "-")
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = local.ha_public_subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.ha_deletion_protection

  tags = local.tags
}

resource "aws_lb_target_group" "ha" {
  for_each = local.ha ? toset(["80", "443"]) : toset([])

  name               = trimsuffix(substr("${var.name}-${each.key}", 0, 32), "-")
  port               = tonumber(each.key)
  protocol           = "TCP"
  vpc_id             = aws_vpc.this.id
  target_type        = "instance"
  preserve_client_ip = "true"

  health_check {
    protocol            = "TCP"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.tags
}

resource "aws_lb_target_group_attachment" "ha" {
  for_each = {
    for pair in setproduct(keys(aws_lb_target_group.ha), keys(aws_eip.ha_control)) : "${pair[0]}-${pair[1]}" => { port = pair[0], host = pair[1] }
  }

  target_group_arn = aws_lb_target_group.ha[each.value.port].arn
  target_id        = aws_instance.ha[each.value.host].id
  port             = tonumber(each.value.port)
}

resource "aws_lb_listener" "ha" {
  # checkov:skip=CKV_AWS_2: TCP passthrough: TLS ends in the proxies, which hold the certificates
  # checkov:skip=CKV_AWS_103: TCP passthrough: the proxies set the TLS versions
  for_each = aws_lb_target_group.ha

  load_balancer_arn = aws_lb.ha[0].arn
  port              = tonumber(each.key)
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = each.value.arn
  }

  tags = local.tags
}
