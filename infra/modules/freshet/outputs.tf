output "repository_url" { value = aws_ecr_repository.freshet.repository_url }
output "cluster_name" { value = aws_ecs_cluster.this.name }
output "service_name" { value = aws_ecs_service.freshet.name }
