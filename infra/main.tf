# AtlasCo's change-data-capture stack: RDS PostgreSQL → Freshet on ECS Fargate → MSK → S3 →
# Redshift. dev.tfvars and prod.tfvars drive the same code; only sizes and redundancy differ.

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Project     = "freshet"
      Environment = var.environment
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name = "atlasco-${var.environment}"
}

# One customer-managed key encrypts every store of the stack (RDS, MSK, S3, Redshift, the logs
# and the secrets): one policy to audit, one rotation schedule.
resource "aws_kms_key" "data" {
  description         = "${local.name}: data at rest"
  enable_key_rotation = true
  # Deleting the key makes every backup unreadable: a month to change one's mind.
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:A key policy's resource "*" is the key itself; the account keeps administering it, as AWS's default key policy does.
  #checkov:skip=CKV_AWS_356:A key policy's resource "*" is the key itself, the only resource a key policy can name.
  #checkov:skip=CKV_AWS_109:The account root's kms:* is AWS's default key policy: without it the key becomes unmanageable.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  # CloudWatch Logs encrypts the log groups (VPC flow logs, MSK, Freshet) with the key.
  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/atlasco/${var.environment}/*"]
    }
  }
}

module "network" {
  source             = "./modules/network"
  name               = local.name
  region             = var.region
  cidr               = var.vpc_cidr
  availability_zones = var.availability_zones
  kms_key_arn        = aws_kms_key.data.arn
  log_group_prefix   = "/atlasco/${var.environment}"
  log_retention_days = var.freshet.log_retention_days
}

module "lake" {
  source      = "./modules/lake"
  name        = local.name
  kms_key_arn = aws_kms_key.data.arn
  prefix      = local.lake_prefix
  settings    = var.lake
}

module "postgres" {
  source             = "./modules/postgres"
  name               = local.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [module.network.postgres_security_group_id]
  kms_key_arn        = aws_kms_key.data.arn
  settings           = var.postgres
}

module "kafka" {
  source             = "./modules/kafka"
  name               = local.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [module.network.kafka_security_group_id]
  kms_key_arn        = aws_kms_key.data.arn
  log_group_prefix   = "/atlasco/${var.environment}"
  log_retention_days = var.freshet.log_retention_days
  settings           = var.kafka
}

module "warehouse" {
  source             = "./modules/warehouse"
  name               = local.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [module.network.warehouse_security_group_id]
  kms_key_arn        = aws_kms_key.data.arn
  lake_bucket_arn    = module.lake.bucket_arn
  lake_prefix        = local.lake_prefix
  settings           = var.warehouse
}

locals {
  lake_prefix = "cdc"
  # The pipeline's environment: pipelines/prod.yaml references these as ${NAME}. Values that
  # are not secret come from the stack's outputs; the secrets stay references, filled at run
  # time from Secrets Manager (ECS `secrets`) or the systemd unit's EnvironmentFile.
  pipeline_environment = {
    ATLASCO_PG_HOST             = module.postgres.endpoint
    ATLASCO_PG_REPLICA_HOST     = module.postgres.replica_endpoint
    ATLASCO_PG_USER             = module.postgres.freshet_username
    ATLASCO_PG_CA               = "/etc/freshet/rds-global-bundle.pem"
    ATLASCO_MSK_BROKERS         = module.kafka.bootstrap_brokers
    ATLASCO_LAKE_BUCKET         = module.lake.bucket_name
    ATLASCO_REGION              = var.region
    ATLASCO_REDSHIFT_CLUSTER    = module.warehouse.cluster_identifier
    ATLASCO_REDSHIFT_SECRET_ARN = module.warehouse.master_secret_arn
    ATLASCO_REDSHIFT_COPY_ROLE  = module.warehouse.copy_role_arn
  }
  # Name → Secrets Manager reference (ARN, or ARN:json-key::). None today: Freshet logs in to
  # RDS and MSK with IAM tokens its task role signs, and names Redshift's secret by ARN. A
  # password a pipeline adds (a Schema Registry's, say) goes here.
  pipeline_secrets = {}
  # In the rendered file a secret stays a reference to itself: `${NAME}`.
  pipeline_secret_references = { for name, _ in local.pipeline_secrets : name => "$${${name}}" }
  pipeline_template          = "${path.module}/../pipelines/prod.yaml"
}

module "freshet" {
  source                   = "./modules/freshet"
  name                     = local.name
  region                   = var.region
  subnet_ids               = module.network.private_subnet_ids
  security_group_ids       = [module.network.freshet_security_group_id]
  state_security_group_ids = [module.network.state_security_group_id]
  kms_key_arn              = aws_kms_key.data.arn
  log_group_name           = "/atlasco/${var.environment}/freshet"
  settings                 = var.freshet
  environment              = local.pipeline_environment
  secrets                  = local.pipeline_secrets
  lake_bucket_arn          = module.lake.bucket_arn
  lake_prefix              = local.lake_prefix
  kafka_cluster_arn        = module.kafka.cluster_arn
  warehouse_cluster_arn    = module.warehouse.cluster_arn
  warehouse_secret_arn     = module.warehouse.master_secret_arn
  postgres_resource_ids    = [module.postgres.resource_id, module.postgres.replica_resource_id]
  postgres_username        = module.postgres.freshet_username
}
