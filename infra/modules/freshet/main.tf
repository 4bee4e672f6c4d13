# Freshet on ECS Fargate: one task (a replication slot has one reader), replaced by stopping the
# old task before the new one starts. The container definition is deploy/ecs-container.json.tftpl.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  # MSK's IAM resources: the cluster ARN's name/uuid, for topics and groups under it.
  kafka_path   = join("/", slice(split("/", var.kafka_cluster_arn), 1, 3))
  kafka_topics = "arn:${local.partition}:kafka:${var.region}:${local.account}:topic/${local.kafka_path}/*"
  kafka_groups = "arn:${local.partition}:kafka:${var.region}:${local.account}:group/${local.kafka_path}/*"
  secret_arns  = distinct([for ref in values(var.secrets) : regex("^(arn:[^:]+:secretsmanager:[^:]+:[^:]+:secret:[^:]+)", ref)[0]])
}

# The image: built from the repository's Dockerfile and pushed here, tags never moved.
resource "aws_ecr_repository" "freshet" {
  name                 = "${var.name}/freshet"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

# Freshet's state directory: small JSON files, written atomically (rename + fsync).
resource "aws_efs_file_system" "state" {
  creation_token = "${var.name}-freshet-state"
  encrypted      = true
  kms_key_id     = var.kms_key_arn
  tags           = { Name = "${var.name}-freshet-state" }
}

resource "aws_efs_backup_policy" "state" {
  file_system_id = aws_efs_file_system.state.id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "state" {
  count           = length(var.subnet_ids)
  file_system_id  = aws_efs_file_system.state.id
  subnet_id       = var.subnet_ids[count.index]
  security_groups = var.state_security_group_ids
}

# The container's user owns the directory it sees.
resource "aws_efs_access_point" "state" {
  file_system_id = aws_efs_file_system.state.id
  posix_user {
    uid = 10001
    gid = 10001
  }
  root_directory {
    path = "/freshet"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0700"
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "freshet" {
  name              = var.log_group_name
  retention_in_days = var.settings.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# The execution role: what ECS needs to start the task (pull, log, inject the secrets).
resource "aws_iam_role" "execution" {
  name               = "${var.name}-freshet-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# Only when the pipeline has secrets for ECS to inject.
data "aws_iam_policy_document" "execution" {
  # The map's keys, known at plan time even when the ARNs are not.
  count = length(var.secrets) > 0 ? 1 : 0
  statement {
    sid       = "InjectTheSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
  statement {
    sid       = "DecryptTheSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  count  = length(var.secrets) > 0 ? 1 : 0
  name   = "secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution[0].json
}

# The task role: what Freshet itself may do, and nothing more.
resource "aws_iam_role" "task" {
  name               = "${var.name}-freshet-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "WriteTheLake"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*"]
  }
  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*", var.lake_prefix]
    }
  }
  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "LoadTheWarehouse"
    actions   = ["redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement"]
    resources = [var.warehouse_cluster_arn]
  }
  # Statement calls name a statement id, not the cluster: scoped to the statements this role
  # ran.
  statement {
    sid       = "FollowItsStatements"
    actions   = ["redshift-data:DescribeStatement", "redshift-data:GetStatementResult", "redshift-data:CancelStatement"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "redshift-data:statement-owner-iam-userid"
      values   = ["$${aws:userid}"]
    }
  }
  statement {
    sid       = "WarehouseCredentials"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.warehouse_secret_arn]
  }
  statement {
    sid       = "ConnectToKafka"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [var.kafka_cluster_arn]
  }
  statement {
    sid = "ItsTopics"
    actions = [
      "kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:AlterTopic",
      "kafka-cluster:WriteData", "kafka-cluster:ReadData", "kafka-cluster:DescribeTopicDynamicConfiguration",
    ]
    resources = [local.kafka_topics]
  }
  statement {
    sid       = "ItsConsumerGroup"
    actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = [local.kafka_groups]
  }
  statement {
    sid       = "MountItsState"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.state.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.state.arn]
    }
  }
  statement {
    sid       = "ConnectToPostgresWithIam"
    actions   = ["rds-db:connect"]
    resources = [for id in var.postgres_resource_ids : "arn:${local.partition}:rds-db:${var.region}:${local.account}:dbuser:${id}/${var.postgres_username}"]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "freshet"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

resource "aws_ecs_task_definition" "freshet" {
  family                   = "${var.name}-freshet"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.settings.cpu
  memory                   = var.settings.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  # The state directory (the slot's identity, the topics' partition counts, snapshot
  # progress) outlives the task: a replacement must not take a known slot for a new one or
  # snapshot every table again.
  volume {
    name = "state"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.state.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.state.id
        iam             = "ENABLED"
      }
    }
  }
  container_definitions = templatefile("${path.module}/../../../deploy/ecs-container.json.tftpl", {
    image       = "${aws_ecr_repository.freshet.repository_url}:${var.settings.image_tag}"
    region      = var.region
    log_group   = aws_cloudwatch_log_group.freshet.name
    environment = [for name in sort(keys(var.environment)) : { name = name, value = var.environment[name] }]
    secrets     = [for name in sort(keys(var.secrets)) : { name = name, valueFrom = var.secrets[name] }]
  })
}

resource "aws_ecs_service" "freshet" {
  name            = "freshet"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.freshet.arn
  launch_type     = "FARGATE"
  desired_count   = 1
  # One slot, one reader: the old task stops (SIGTERM, drain, confirm) before the new starts.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }
}
