variable "name" { type = string }
variable "region" { type = string }
variable "subnet_ids" { type = list(string) }
variable "security_group_ids" { type = list(string) }
variable "state_security_group_ids" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "log_group_name" { type = string }
variable "settings" {
  type = object({
    image_tag          = string
    cpu                = number
    memory             = number
    log_retention_days = number
  })
}
variable "environment" {
  description = "The pipeline's environment variables that are not secret."
  type        = map(string)
}
variable "secrets" {
  description = "The pipeline's secret environment variables: name → Secrets Manager ARN[:json-key::]."
  type        = map(string)
}
variable "lake_bucket_arn" { type = string }
variable "lake_prefix" { type = string }
variable "kafka_cluster_arn" { type = string }
variable "warehouse_cluster_arn" { type = string }
variable "warehouse_secret_arn" { type = string }
variable "postgres_resource_ids" {
  description = "The RDS resource ids Freshet logs in to with IAM (the primary and its replica)."
  type        = list(string)
}
variable "postgres_username" { type = string }
