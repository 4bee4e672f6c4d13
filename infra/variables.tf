variable "environment" {
  description = "Name of the environment (dev, prod): prefixes every resource."
  type        = string
}

variable "region" {
  description = "AWS region of the whole stack."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_cidr" {
  description = "The VPC's address range; private subnets are carved from it, one per zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "How many zones the subnets (and so RDS Multi-AZ, MSK brokers, Redshift) spread over."
  type        = number
  default     = 2
}

variable "postgres" {
  description = "The source database: RDS PostgreSQL with logical replication."
  type = object({
    instance_class           = string
    allocated_storage_gb     = number
    max_allocated_storage_gb = number
    iops                     = optional(number)
    multi_az                 = bool
    backup_retention_days    = number
    deletion_protection      = bool
    # Slots and WAL senders: one slot per capture group, plus headroom for a re-snapshot's
    # temporary slot and for replicas.
    max_replication_slots = number
    max_wal_senders       = number
    # A slot whose consumer is gone may hold at most this much WAL before RDS invalidates it
    # (Freshet then re-snapshots): the disk is protected, the primary never stops.
    max_slot_wal_keep_size_mb = number
  })
}

variable "kafka" {
  description = "The event log: MSK with TLS and IAM authentication."
  type = object({
    kafka_version              = string
    broker_count               = number
    instance_type              = string
    volume_size_gb             = number
    default_replication_factor = number
    min_insync_replicas        = number
  })
}

variable "warehouse" {
  description = "The warehouse: a Redshift provisioned cluster."
  type = object({
    node_type               = string
    number_of_nodes         = number
    snapshot_retention_days = number
  })
}

variable "lake" {
  description = "The Parquet lake on S3: when objects move to cheaper storage classes."
  type = object({
    force_destroy          = bool
    warm_after_days        = number
    cold_after_days        = number
    noncurrent_expire_days = number
  })
}

variable "freshet" {
  description = "The Freshet service on ECS Fargate."
  type = object({
    image_tag          = string
    cpu                = number
    memory             = number
    log_retention_days = number
  })
}
