variable "name" { type = string }
variable "subnet_ids" { type = list(string) }
variable "security_group_ids" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "lake_bucket_arn" { type = string }
variable "lake_prefix" { type = string }
variable "settings" {
  type = object({
    node_type               = string
    number_of_nodes         = number
    snapshot_retention_days = number
  })
}
