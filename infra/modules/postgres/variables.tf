variable "name" { type = string }
variable "subnet_ids" { type = list(string) }
variable "security_group_ids" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "settings" {
  type = object({
    instance_class            = string
    allocated_storage_gb      = number
    max_allocated_storage_gb  = number
    iops                      = optional(number)
    multi_az                  = bool
    backup_retention_days     = number
    deletion_protection       = bool
    max_replication_slots     = number
    max_wal_senders           = number
    max_slot_wal_keep_size_mb = number
  })
}
