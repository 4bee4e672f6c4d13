# The event log: MSK, TLS only, clients authenticated by IAM (SASL OAUTHBEARER with tokens
# signed by the task role: no password to keep or rotate), encrypted at rest with the stack's key.

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
      scram = false
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
