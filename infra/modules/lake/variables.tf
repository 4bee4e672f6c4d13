variable "name" { type = string }
variable "kms_key_arn" { type = string }
variable "prefix" {
  description = "Where Freshet writes in the bucket: the lifecycle's scope."
  type        = string
}
variable "settings" {
  type = object({
    force_destroy          = bool
    warm_after_days        = number
    cold_after_days        = number
    noncurrent_expire_days = number
  })
}
