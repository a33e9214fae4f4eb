# Airflow's database in topology "ha": MySQL on RDS, Multi-AZ (a synchronous
# standby in the other zone, promoted by RDS), encrypted, private, TLS only,
# with automated backups. RDS keeps the master password in Secrets Manager.

resource "aws_db_subnet_group" "airflow" {
  count = local.ha ? 1 : 0

  name        = "${var.name}-airflow"
  description = "btc-usd-stack: Airflow's database in the private subnets of both zones"
  subnet_ids  = local.ha_private_subnet_ids

  tags = local.tags
}

resource "aws_db_parameter_group" "airflow" {
  count = local.ha ? 1 : 0

  name        = "${var.name}-airflow"
  family      = "mysql8.4"
  description = "btc-usd-stack: TLS only, and the settings Airflow expects"

  parameter {
    name  = "require_secure_transport"
    value = "1"
  }

  parameter {
    # Airflow's migrations and its serialized DAGs need 4-byte UTF-8.
    name  = "character_set_server"
    value = "utf8mb4"
  }

  tags = local.tags
}

# Enhanced monitoring: the OS figures of the database host, every minute.
data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.ha ? 1 : 0

  name               = "${var.name}-rds-monitoring"
  description        = "btc-usd-stack: RDS enhanced monitoring of Airflow's database"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.ha ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "airflow" {
  # checkov:skip=CKV_AWS_353: Performance Insights is not offered on the small burstable classes this stack sizes for
  # checkov:skip=CKV_AWS_354: Performance Insights is off (see CKV_AWS_353), so it has no key
  count = local.ha ? 1 : 0

  identifier     = "${var.name}-airflow"
  engine         = "mysql"
  engine_version = "8.4"
  instance_class = var.ha_db_instance_class

  allocated_storage     = 20
  max_allocated_storage = 100
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                     = "airflow"
  username                    = "airflow"
  manage_master_user_password = true

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.airflow[0].name
  vpc_security_group_ids = [aws_security_group.ha["db"].id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.airflow[0].name

  backup_retention_period = var.ha_db_backup_retention_days
  backup_window           = "02:00-03:00"
  maintenance_window      = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot   = true
  deletion_protection     = var.ha_deletion_protection
  skip_final_snapshot     = false
  # Unique per VPC: a stack made again under the same name keeps the earlier final snapshot.
  final_snapshot_identifier = "${var.name}-airflow-final-${aws_vpc.this.id}"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["error", "slowquery"]
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring[0].arn

  tags = merge(local.tags, { Name = "${var.name}-airflow" })
}
