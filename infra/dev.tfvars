# A developer's stack: one of everything, small, torn down freely.
environment = "dev"
region      = "eu-west-1"
# Three zones: MSK spreads brokers evenly over them, and the pipeline's topics keep three
# replicas (pipelines/prod.yaml) in every environment.
availability_zones = 3

postgres = {
  instance_class            = "db.t4g.medium"
  allocated_storage_gb      = 50
  max_allocated_storage_gb  = 200
  multi_az                  = false
  backup_retention_days     = 1
  deletion_protection       = false
  max_replication_slots     = 5
  max_wal_senders           = 10
  max_slot_wal_keep_size_mb = 10240
}

kafka = {
  kafka_version              = "3.6.0"
  broker_count               = 3
  instance_type              = "kafka.t3.small"
  volume_size_gb             = 100
  default_replication_factor = 3
  min_insync_replicas        = 2
}

warehouse = {
  node_type               = "ra3.large"
  number_of_nodes         = 1
  snapshot_retention_days = 1
}

lake = {
  force_destroy          = true
  warm_after_days        = 30
  cold_after_days        = 90
  noncurrent_expire_days = 7
}

freshet = {
  image_tag          = "0.1.0"
  cpu                = 1024
  memory             = 2048
  log_retention_days = 30
}
