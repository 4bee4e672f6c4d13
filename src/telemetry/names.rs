//! Every metric Freshet exports, by name: `freshet_<stage>_<noun>_<unit>`, Prometheus's
//! conventions (`_total` counters, base units). Labels take values from bounded sets only
//! (table names from the pipeline file, stages, halves, event kinds), never offsets or keys.

/// Commit in PostgreSQL → last record of the transaction acknowledged by Kafka.
pub const KAFKA_COMMIT_TO_DELIVERY_SECONDS: &str = "freshet_kafka_commit_to_delivery_seconds";
pub const KAFKA_RECORDS_DELIVERED_TOTAL: &str = "freshet_kafka_records_delivered_total";
/// Records produced but not yet acknowledged by the broker.
pub const KAFKA_IN_FLIGHT_RECORDS: &str = "freshet_kafka_in_flight_records";

/// Records the batcher consumed, by table.
pub const BATCHER_RECORDS_CONSUMED_TOTAL: &str = "freshet_batcher_records_consumed_total";
/// Rows written into durable lake objects, by table.
pub const BATCHER_ROWS_WRITTEN_TOTAL: &str = "freshet_batcher_rows_written_total";
/// Lake objects written, by table and rotation reason.
pub const BATCHER_FILES_WRITTEN_TOTAL: &str = "freshet_batcher_files_written_total";
pub const BATCHER_BYTES_WRITTEN_TOTAL: &str = "freshet_batcher_bytes_written_total";
/// Commit in PostgreSQL → the row's object durable in the store, by table.
pub const BATCHER_COMMIT_TO_DURABLE_SECONDS: &str = "freshet_batcher_commit_to_durable_seconds";

/// One store request's duration, by operation (put, list).
pub const STORE_REQUEST_SECONDS: &str = "freshet_store_request_seconds";

/// Rows copied into the warehouse's staging table, by table (before the merge drops what an
/// earlier load took or what is not newer).
pub const LOADER_ROWS_COPIED_TOTAL: &str = "freshet_loader_rows_copied_total";
/// Lake objects loaded, by table.
pub const LOADER_OBJECTS_LOADED_TOTAL: &str = "freshet_loader_objects_loaded_total";
/// One load transaction's duration (fetching the objects included), by table.
pub const LOADER_LOAD_SECONDS: &str = "freshet_loader_load_seconds";
/// Commit in PostgreSQL → visible in the warehouse, for the oldest change of each load.
pub const LOADER_COMMIT_TO_VISIBLE_SECONDS: &str = "freshet_loader_commit_to_visible_seconds";
/// Text values cut to the warehouse's longest VARCHAR (Redshift), by table and column.
pub const LOADER_VALUES_TRUNCATED_TOTAL: &str = "freshet_loader_values_truncated_total";
/// Objects waiting to be loaded, by table.
pub const LOADER_PENDING_OBJECTS: &str = "freshet_loader_pending_objects";

/// Now minus the commit time up to which a stage holds everything of a table (a bound on
/// how stale a read there is), by table and stage (captured, kafka, lake, loaded).
pub const FRESHNESS_LAG_SECONDS: &str = "freshet_freshness_lag_seconds";
/// That commit time itself (Unix seconds), by table and stage.
pub const FRESHNESS_WATERMARK_TIMESTAMP_SECONDS: &str =
    "freshet_freshness_watermark_timestamp_seconds";
/// The table's freshness budget (its class's), by table.
pub const FRESHNESS_BUDGET_SECONDS: &str = "freshet_freshness_budget_seconds";
/// A stage's lag passing the table's budget, by table and stage.
pub const FRESHNESS_BREACHES_TOTAL: &str = "freshet_freshness_breaches_total";

/// Routing decisions, by target (warehouse, replica, primary) and reason.
pub const ROUTER_DECISIONS_TOTAL: &str = "freshet_router_decisions_total";

/// Restarts of a half after a transient failure, by half.
pub const PIPELINE_RESTARTS_TOTAL: &str = "freshet_pipeline_restarts_total";
/// Notable events, by kind and stage (see `telemetry::Event`).
pub const EVENTS_TOTAL: &str = "freshet_events_total";
