output "repository_url" { value = aws_ecr_repository.freshet.repository_url }
output "cluster_name" { value = aws_ecs_cluster.this.name }
output "service_name" { value = aws_ecs_service.freshet.name }
output "task_definition_arn" { value = aws_ecs_task_definition.freshet.arn }
output "task_role_arn" { value = aws_iam_role.task.arn }
