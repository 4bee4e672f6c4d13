variable "name" { type = string }
variable "subnet_ids" { type = list(string) }
variable "security_group_ids" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "log_group_prefix" { type = string }
variable "log_retention_days" { type = number }
variable "settings" {
  type = object({
    kafka_version              = string
    broker_count               = number
    instance_type              = string
    volume_size_gb             = number
    default_replication_factor = number
    min_insync_replicas        = number
  })
}
