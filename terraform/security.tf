resource "aws_security_group" "stack" {
  name        = var.name
  description = "btc-usd-stack VM: SSH from admins, HTTP/HTTPS from allowed networks, nothing else"
  vpc_id      = aws_vpc.this.id

  tags = merge(local.tags, { Name = var.name })
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.stack.id
  description       = "SSH from an admin network"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "web" {
  for_each = {
    for pair in setproduct(var.allowed_cidrs, [80, 443]) : "${pair[0]}:${pair[1]}" => { cidr = pair[0], port = pair[1] }
  }

  security_group_id = aws_security_group.stack.id
  description       = each.value.port == 80 ? "HTTP (redirects to HTTPS) from an allowed network" : "HTTPS (Grafana, Airflow) from an allowed network"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr

  tags = local.tags
}

# The VM installs packages and images and asks the rate APIs over the internet.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.stack.id
  description       = "Outbound: apt, PyPI, container registries, rate APIs, SMTP relay"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = local.tags
}
