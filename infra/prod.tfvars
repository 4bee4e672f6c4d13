# AtlasCo production: Multi-AZ RDS sized for ~10k inserts/s, three MSK brokers over three
# zones, a multi-node Redshift cluster.
environment        = "prod"
region             = "eu-west-1"
availability_zones = 3

postgres = {
  instance_class            = "db.r6g.2xlarge"
  allocated_storage_gb      = 2000
  max_allocated_storage_gb  = 8000
  iops                      = 20000
  multi_az                  = true
  backup_retention_days     = 14
  deletion_protection       = true
  max_replication_slots     = 10
  max_wal_senders           = 20
  max_slot_wal_keep_size_mb = 204800
}

kafka = {
  kafka_version              = "3.6.0"
  broker_count               = 3
  instance_type              = "kafka.m7g.large"
  volume_size_gb             = 2000
  default_replication_factor = 3
  min_insync_replicas        = 2
}

warehouse = {
  node_type               = "ra3.4xlarge"
  number_of_nodes         = 4
  snapshot_retention_days = 14
}

lake = {
  force_destroy          = false
  warm_after_days        = 30
  cold_after_days        = 180
  noncurrent_expire_days = 30
}

freshet = {
  image_tag          = "0.1.0"
  cpu                = 4096
  memory             = 8192
  log_retention_days = 365
}
