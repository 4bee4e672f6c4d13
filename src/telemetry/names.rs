//! Every metric Freshet exports, by name: `freshet_<stage>_<noun>_<unit>`, Prometheus's
//! conventions (`_total` counters, base units). Labels take values from bounded sets only
//! (table names from the pipeline file, stages, halves, event kinds), never offsets or keys.

/// Declares each metric's name (a constant) and help text (its `# HELP` line).
macro_rules! metrics {
    ($($kind:ident $name:ident = $value:literal, $help:literal;)*) => {
        $(#[doc = $help] pub const $name: &str = $value;)*

        /// Gives every metric its help text and type (`promtool check metrics` wants both).
        pub fn describe() {
            $(metrics!(@describe $kind $value $help);)*
        }
    };
    (@describe counter $value:literal $help:literal) => { metrics::describe_counter!($value, $help) };
    (@describe gauge $value:literal $help:literal) => { metrics::describe_gauge!($value, $help) };
    (@describe histogram $value:literal $help:literal) => { metrics::describe_histogram!($value, $help) };
}

metrics! {
    counter CAPTURE_CHANGES_TOTAL = "freshet_capture_changes_total",
        "Changes captured (streamed from the WAL or read by a snapshot), by table and Debezium op (c, u, d, r, t).";
    counter CAPTURE_BYTES_TOTAL = "freshet_capture_bytes_total",
        "Bytes of the record keys and values written for the captured changes, by table.";
    histogram KAFKA_COMMIT_TO_DELIVERY_SECONDS = "freshet_kafka_commit_to_delivery_seconds",
        "Commit in PostgreSQL → last record of the transaction acknowledged by Kafka.";
    counter KAFKA_RECORDS_DELIVERED_TOTAL = "freshet_kafka_records_delivered_total",
        "Records acknowledged by the Kafka brokers.";
    gauge KAFKA_IN_FLIGHT_RECORDS = "freshet_kafka_in_flight_records",
        "Records produced but not yet acknowledged by the broker.";
    counter BATCHER_RECORDS_CONSUMED_TOTAL = "freshet_batcher_records_consumed_total",
        "Records the batcher consumed, by table.";
    counter BATCHER_ROWS_WRITTEN_TOTAL = "freshet_batcher_rows_written_total",
        "Rows written into durable lake objects, by table.";
    counter BATCHER_FILES_WRITTEN_TOTAL = "freshet_batcher_files_written_total",
        "Lake objects written, by table and rotation reason.";
    counter BATCHER_BYTES_WRITTEN_TOTAL = "freshet_batcher_bytes_written_total",
        "Bytes of lake objects written, by table.";
    histogram BATCHER_COMMIT_TO_DURABLE_SECONDS = "freshet_batcher_commit_to_durable_seconds",
        "Commit in PostgreSQL → the row's object durable in the store, by table.";
    histogram STORE_REQUEST_SECONDS = "freshet_store_request_seconds",
        "One store request's duration, by operation (put, list).";
    counter LOADER_ROWS_COPIED_TOTAL = "freshet_loader_rows_copied_total",
        "Rows copied into the warehouse's staging table, by table (before the merge drops what an earlier load took or what is not newer).";
    counter LOADER_OBJECTS_LOADED_TOTAL = "freshet_loader_objects_loaded_total",
        "Lake objects loaded, by table.";
    histogram LOADER_LOAD_SECONDS = "freshet_loader_load_seconds",
        "One load transaction's duration (fetching the objects included), by table.";
    histogram LOADER_COMMIT_TO_VISIBLE_SECONDS = "freshet_loader_commit_to_visible_seconds",
        "Commit in PostgreSQL → visible in the warehouse, for the oldest change of each load.";
    counter LOADER_VALUES_TRUNCATED_TOTAL = "freshet_loader_values_truncated_total",
        "Text values cut to the warehouse's longest VARCHAR (Redshift), by table and column.";
    gauge LOADER_PENDING_OBJECTS = "freshet_loader_pending_objects",
        "Objects waiting to be loaded, by table.";
    gauge FRESHNESS_LAG_SECONDS = "freshet_freshness_lag_seconds",
        "Now minus the commit time up to which a stage holds everything of a table (a bound on how stale a read there is), by table and stage (captured, kafka, lake, loaded).";
    gauge FRESHNESS_WATERMARK_TIMESTAMP_SECONDS = "freshet_freshness_watermark_timestamp_seconds",
        "That commit time itself (Unix seconds), by table and stage.";
    gauge FRESHNESS_BUDGET_SECONDS = "freshet_freshness_budget_seconds",
        "The table's freshness budget, by table and class (`none`: no class, NaN).";
    gauge FRESHNESS_SNAPSHOTTING = "freshet_freshness_snapshotting",
        "1 while the table's snapshot runs (its watermarks wait for its end; its lag is not evaluated), else 0, by table.";
    counter FRESHNESS_BREACHES_TOTAL = "freshet_freshness_breaches_total",
        "A stage's lag passing the table's budget, by table and stage.";
    gauge SOURCE_SLOT_RETAINED_WAL_BYTES = "freshet_source_slot_retained_wal_bytes",
        "WAL the replication slot holds back on the primary (its `restart_lsn` to the current position), by slot: probed by the router each `router.poll_interval`.";
    gauge SOURCE_SLOT_SAFE_WAL_BYTES = "freshet_source_slot_safe_wal_bytes",
        "WAL that may still be written before `max_slot_wal_keep_size` invalidates the slot (`safe_wal_size`), by slot; absent when the size is unlimited.";
    counter ROUTER_DECISIONS_TOTAL = "freshet_router_decisions_total",
        "Routing decisions, by target (warehouse, replica, primary) and reason.";
    counter PIPELINE_RESTARTS_TOTAL = "freshet_pipeline_restarts_total",
        "Restarts of a half after a transient failure, by half.";
    counter EVENTS_TOTAL = "freshet_events_total",
        "Notable events, by kind and stage (see `telemetry::Event`).";
}
