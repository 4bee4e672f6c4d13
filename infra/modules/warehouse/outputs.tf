output "cluster_identifier" { value = aws_redshift_cluster.this.cluster_identifier }
output "cluster_arn" { value = aws_redshift_cluster.this.arn }
output "master_secret_arn" { value = aws_redshift_cluster.this.master_password_secret_arn }
output "copy_role_arn" { value = aws_iam_role.copy.arn }
