# The warehouse: a private, encrypted Redshift cluster with audit logging and automated
# snapshots. Freshet loads it through the Redshift Data API (no inbound connection), and COPY
# assumes a role that can read the lake's prefix and nothing else.

locals {
  database = "atlasco"
}

resource "aws_redshift_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_redshift_parameter_group" "this" {
  name   = var.name
  family = "redshift-1.0"
  parameter {
    name  = "require_ssl"
    value = "true"
  }
  parameter {
    name  = "enable_user_activity_logging"
    value = "true"
  }
}

data "aws_iam_policy_document" "copy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["redshift.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "copy" {
  name               = "${var.name}-redshift-copy"
  assume_role_policy = data.aws_iam_policy_document.copy_assume.json
}

data "aws_iam_policy_document" "copy" {
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*"]
  }
  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }
  statement {
    sid       = "DecryptTheLake"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "copy" {
  name   = "copy-from-lake"
  role   = aws_iam_role.copy.id
  policy = data.aws_iam_policy_document.copy.json
}

resource "aws_redshift_cluster" "this" {
  #checkov:skip=CKV_AWS_71:Audit logging is the aws_redshift_logging resource below (the cluster's own logging block is deprecated).
  cluster_identifier = var.name
  database_name      = local.database
  master_username    = "atlasco_admin"
  # Redshift keeps the password in Secrets Manager; the Data API reads it from there.
  manage_master_password            = true
  master_password_secret_kms_key_id = var.kms_key_arn
  node_type                         = var.settings.node_type
  cluster_type                      = var.settings.number_of_nodes > 1 ? "multi-node" : "single-node"
  number_of_nodes                   = var.settings.number_of_nodes

  cluster_subnet_group_name    = aws_redshift_subnet_group.this.name
  cluster_parameter_group_name = aws_redshift_parameter_group.this.name
  vpc_security_group_ids       = var.security_group_ids
  publicly_accessible          = false
  enhanced_vpc_routing         = true
  iam_roles                    = [aws_iam_role.copy.arn]

  encrypted                           = true
  kms_key_id                          = var.kms_key_arn
  automated_snapshot_retention_period = var.settings.snapshot_retention_days
  allow_version_upgrade               = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
}

# Audit: connections, user changes and every query, to CloudWatch.
resource "aws_redshift_logging" "this" {
  cluster_identifier   = aws_redshift_cluster.this.id
  log_destination_type = "cloudwatch"
  log_exports          = ["connectionlog", "useractivitylog", "userlog"]
}
