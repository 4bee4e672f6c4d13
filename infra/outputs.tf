output "postgres_endpoint" {
  description = "The primary's host name (for psql and the schema)."
  value       = module.postgres.endpoint
}

output "postgres_replica_endpoint" {
  description = "The read replica's host name (the read router's replica)."
  value       = module.postgres.replica_endpoint
}

output "postgres_username" {
  description = "The master user."
  value       = module.postgres.username
}

output "postgres_password" {
  description = "The master user's password, read from the secret RDS manages when Terraform last ran: RDS rotates it, so read it again (it is in the state too: keep the state encrypted)."
  value       = module.postgres.password
  sensitive   = true
}

output "freshet_role_sql" {
  description = "Creates Freshet's login on the source, an IAM one (no password): terraform output -raw freshet_role_sql | psql …"
  value       = module.postgres.freshet_role_sql
}

output "kafka_bootstrap_brokers" {
  description = "MSK's IAM (SASL OAUTHBEARER) over TLS bootstrap list."
  value       = module.kafka.bootstrap_brokers
}

output "lake_bucket" {
  description = "The Parquet lake's bucket."
  value       = module.lake.bucket_name
}

output "redshift_cluster_identifier" {
  description = "The warehouse cluster (warehouse.redshift_data.cluster_identifier)."
  value       = module.warehouse.cluster_identifier
}

output "redshift_copy_role_arn" {
  description = "The role Redshift's COPY assumes: read-only on the lake's prefix."
  value       = module.warehouse.copy_role_arn
}

output "freshet_pipeline" {
  description = "pipelines/prod.yaml for this environment: addresses filled in, secrets left as $${NAME} references for the service's environment."
  value       = templatefile(local.pipeline_template, merge(local.pipeline_environment, local.pipeline_secret_references))
}

output "freshet_environment" {
  description = "The pipeline's environment without its secrets: an EnvironmentFile for the systemd unit, to which the secrets are added."
  value       = join("", [for name, value in local.pipeline_environment : "${name}=${value}\n"])
}

output "freshet_secrets" {
  description = "Which Secrets Manager secret (and JSON key) fills each secret of the pipeline."
  value       = local.pipeline_secrets
}

output "ecr_repository" {
  description = "Where to push the image built from the Dockerfile (tag: freshet.image_tag)."
  value       = module.freshet.repository_url
}

output "ecs_cluster" {
  description = "For aws ecs update-service --cluster … (the runbook's restarts)."
  value       = module.freshet.cluster_name
}

output "ecs_service" {
  description = "For aws ecs update-service --service … (the runbook's restarts)."
  value       = module.freshet.service_name
}
