# The source: RDS PostgreSQL 16 with logical replication, TLS enforced, IAM authentication on,
# a read replica for the read router.

locals {
  username         = "atlasco_admin"
  freshet_username = "freshet"
  database         = "atlasco"
  # Static parameters need a reboot; RDS applies them at the first one (creation included).
  parameters = {
    # Logical replication (wal_level=logical) for Freshet's slot.
    "rds.logical_replication" = { value = "1", apply = "pending-reboot" }
    "max_replication_slots"   = { value = tostring(var.settings.max_replication_slots), apply = "pending-reboot" }
    "max_wal_senders"         = { value = tostring(var.settings.max_wal_senders), apply = "pending-reboot" }
    # A consumer silent for a minute is gone: its walsender ends and the slot is free again.
    "wal_sender_timeout" = { value = "60000", apply = "immediate" }
    # WAL a slot may hold before RDS invalidates it: the disk is protected, Freshet re-snapshots.
    "max_slot_wal_keep_size" = { value = tostring(var.settings.max_slot_wal_keep_size_mb), apply = "immediate" }
    # ~10k inserts/s: fewer, larger checkpoints, compressed full-page writes, and commits that
    # group their WAL flushes.
    "max_wal_size"                 = { value = "16384", apply = "immediate" }
    "checkpoint_timeout"           = { value = "900", apply = "immediate" }
    "checkpoint_completion_target" = { value = "0.9", apply = "immediate" }
    "wal_compression"              = { value = "lz4", apply = "immediate" }
    "wal_buffers"                  = { value = "8192", apply = "pending-reboot" }
    "commit_delay"                 = { value = "100", apply = "immediate" }
    # Audit: connections and DDL.
    "log_connections"            = { value = "1", apply = "immediate" }
    "log_disconnections"         = { value = "1", apply = "immediate" }
    "log_statement"              = { value = "ddl", apply = "immediate" }
    "log_min_duration_statement" = { value = "1000", apply = "immediate" }
  }
}

data "aws_partition" "current" {}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-pg16"
  family = "postgres16"
  # TLS or nothing, for every client.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  dynamic "parameter" {
    for_each = local.parameters
    content {
      name         = parameter.key
      value        = parameter.value.value
      apply_method = parameter.value.apply
    }
  }
  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "primary" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.settings.instance_class
  db_name        = local.database
  username       = local.username
  # RDS keeps the password in Secrets Manager, encrypted with our key, and rotates it.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  allocated_storage     = var.settings.allocated_storage_gb
  max_allocated_storage = var.settings.max_allocated_storage_gb
  storage_type          = "gp3"
  iops                  = var.settings.iops
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  multi_az               = var.settings.multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = var.security_group_ids
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true
  backup_retention_period             = var.settings.backup_retention_days
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.settings.deletion_protection
  skip_final_snapshot                 = !var.settings.deletion_protection
  final_snapshot_identifier           = "${var.name}-final"
  auto_minor_version_upgrade          = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
}

# The read router's replica: asynchronous streaming replication inside RDS.
resource "aws_db_instance" "replica" {
  identifier          = "${var.name}-replica"
  replicate_source_db = aws_db_instance.primary.identifier
  instance_class      = var.settings.instance_class
  multi_az            = var.settings.multi_az
  storage_encrypted   = true
  kms_key_id          = var.kms_key_arn
  publicly_accessible = false
  # The replica follows the primary's subnet group and parameter group.
  vpc_security_group_ids = var.security_group_ids
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true
  skip_final_snapshot                 = true
  deletion_protection                 = var.settings.deletion_protection
  auto_minor_version_upgrade          = true
  copy_tags_to_snapshot               = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
}

data "aws_secretsmanager_secret_version" "master" {
  secret_id = aws_db_instance.primary.master_user_secret[0].secret_arn
}
