output "endpoint" { value = aws_db_instance.primary.address }
output "replica_endpoint" { value = aws_db_instance.replica.address }
output "username" { value = local.username }
output "freshet_username" { value = local.freshet_username }
output "freshet_role_sql" {
  value = templatefile("${path.module}/freshet-role.sql.tftpl", {
    endpoint = aws_db_instance.primary.address
    username = local.freshet_username
  })
}
output "resource_id" { value = aws_db_instance.primary.resource_id }
output "replica_resource_id" { value = aws_db_instance.replica.resource_id }
output "password" {
  value     = jsondecode(data.aws_secretsmanager_secret_version.master.secret_string)["password"]
  sensitive = true
}
