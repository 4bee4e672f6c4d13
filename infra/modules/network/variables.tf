variable "name" { type = string }
variable "region" { type = string }
variable "cidr" { type = string }
variable "availability_zones" { type = number }
variable "kms_key_arn" { type = string }
variable "log_group_prefix" { type = string }
variable "log_retention_days" { type = number }
