output "private_subnet_ids" { value = aws_subnet.private[*].id }
output "freshet_security_group_id" { value = aws_security_group.freshet.id }
output "postgres_security_group_id" { value = aws_security_group.postgres.id }
output "kafka_security_group_id" { value = aws_security_group.kafka.id }
output "state_security_group_id" { value = aws_security_group.state.id }
output "warehouse_security_group_id" { value = aws_security_group.warehouse.id }
