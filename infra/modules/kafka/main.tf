# The event log: MSK, TLS only, clients authenticated by SASL (SCRAM for Freshet today, IAM
# on as well), encrypted at rest with the stack's key.

locals {
  scram_username = "freshet"
}

resource "aws_msk_configuration" "this" {
  name           = var.name
  kafka_versions = [var.settings.kafka_version]
  # Freshet creates its topics with their partitions and replication; nothing else may.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=${var.settings.default_replication_factor}
    min.insync.replicas=${var.settings.min_insync_replicas}
    unclean.leader.election.enable=false
    log.retention.hours=168
  PROPERTIES
}

resource "aws_cloudwatch_log_group" "brokers" {
  name              = "${var.log_group_prefix}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.settings.kafka_version
  number_of_broker_nodes = var.settings.broker_count

  broker_node_group_info {
    instance_type   = var.settings.instance_type
    client_subnets  = var.subnet_ids
    security_groups = var.security_group_ids
    storage_info {
      ebs_storage_info {
        volume_size = var.settings.volume_size_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.kms_key_arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam   = true
      scram = true
    }
  }

  enhanced_monitoring = "PER_TOPIC_PER_PARTITION"

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers.name
      }
    }
  }
}

# MSK reads SCRAM users from secrets named AmazonMSK_*, encrypted with a customer key.
resource "aws_secretsmanager_secret" "scram" {
  name       = "AmazonMSK_${var.name}-freshet"
  kms_key_id = var.kms_key_arn
  #checkov:skip=CKV2_AWS_57:MSK SCRAM secrets cannot rotate automatically (the broker reads them at association); rotate by the runbook's procedure.
}

data "aws_secretsmanager_random_password" "scram" {
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "scram" {
  secret_id = aws_secretsmanager_secret.scram.id
  secret_string = jsonencode({
    username = local.scram_username
    password = data.aws_secretsmanager_random_password.scram.random_password
  })
  # The data source draws a new password at every plan: the first one stays until an
  # operator rotates it.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [aws_secretsmanager_secret.scram.arn]
  depends_on      = [aws_secretsmanager_secret_version.scram]
}
