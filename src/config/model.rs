//! The pipeline file's shape. Every struct rejects unknown keys; defaults are named constants
//! so the README and the code cannot drift apart.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::value::{Duration, PgUrl, Secret, TableName, Text};

pub const DEFAULT_SLOT: &str = "freshet";
pub const DEFAULT_PUBLICATION: &str = "freshet";
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: u32 = 10_000;
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TOPIC_PREFIX: &str = "freshet";
pub const DEFAULT_TOPIC_PARTITIONS: u32 = 16;
pub const DEFAULT_REPLICATION_FACTOR: u16 = 1;
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
pub const DEFAULT_BATCH_BYTES: u32 = 1 << 20;
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 16 << 20;
pub const DEFAULT_ROTATE_ROWS: u64 = 1_000_000;
pub const DEFAULT_ROTATE_BYTES: u64 = 128 << 20;
pub const DEFAULT_ROTATE_AGE: Duration = Duration::from_secs(300);
pub const DEFAULT_CONSUMER_GROUP: &str = "freshet-sink";
pub const DEFAULT_WAREHOUSE_SCHEMA: &str = "analytics";
pub const DEFAULT_REPLICA_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The budget matrix every table picks its class from, unless the file defines its own.
pub fn default_freshness_classes() -> BTreeMap<String, Duration> {
    BTreeMap::from([
        ("alerts".to_string(), Duration::from_millis(0)),
        ("analytics".to_string(), Duration::from_secs(30)),
        ("exports".to_string(), Duration::from_secs(15 * 60)),
    ])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Names the pipeline in logs, metrics and default resource names.
    pub name: String,
    pub source: Source,
    #[serde(default)]
    pub transform: Transform,
    pub kafka: Option<Kafka>,
    pub batcher: Option<Batcher>,
    pub warehouse: Option<Warehouse>,
    /// Per-table settings, keyed by `schema.table`; every key must be a captured table.
    #[serde(default)]
    pub tables: BTreeMap<String, Spanned<Table>>,
    /// Class name → freshness budget. Replaces the default matrix when given.
    #[serde(default = "default_freshness_classes")]
    pub freshness_classes: BTreeMap<String, Duration>,
    #[serde(default)]
    pub router: Router,
}

impl Pipeline {
    /// The freshness budget of `table`'s class, when it has one.
    pub fn budget(&self, table: &TableName) -> Option<std::time::Duration> {
        self.tables
            .get(&table.to_string())
            .and_then(|s| self.freshness_classes.get(&s.value.freshness.value))
            .map(|d| d.0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub url: PgUrl,
    #[serde(default = "default_slot")]
    pub slot: String,
    #[serde(default = "default_publication")]
    pub publication: String,
    /// Create the slot when it is missing. Never recreates a lost one.
    #[serde(default = "yes")]
    pub create_slot: bool,
    #[serde(default = "yes")]
    pub create_publication: bool,
    #[serde(deserialize_with = "non_empty")]
    pub tables: Vec<Spanned<TableName>>,
    #[serde(default)]
    pub snapshot: Snapshot,
    #[serde(default = "default_heartbeat", deserialize_with = "nonzero_duration")]
    pub heartbeat_interval: Duration,
    /// How often the confirmed position is reported; must stay well under the server's
    /// `wal_sender_timeout` (60s by default) or the server drops the connection.
    #[serde(default = "default_status", deserialize_with = "status_interval")]
    pub status_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(default)]
    pub mode: SnapshotMode,
    #[serde(default = "default_chunk_rows", deserialize_with = "positive")]
    pub chunk_rows: u32,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            mode: SnapshotMode::default(),
            chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot each table once, the first time the pipeline sees it.
    #[default]
    Initial,
    /// Stream changes only.
    Never,
}

/// How changes become records: Debezium's PostgreSQL connector options, under its names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// The entity-attribute-value layout, when the source has one.
    pub eav: Option<Eav>,
    /// After a delete, a tombstone (the key with a null value), so compacted topics and
    /// KTables forget the key: Debezium's `tombstones.on.delete`, on by default as there.
    #[serde(default = "yes")]
    pub tombstones_on_delete: bool,
    /// Debezium's `time.precision.mode`.
    #[serde(default)]
    pub time_precision: TimePrecision,
    /// Debezium's `decimal.handling.mode`.
    #[serde(default)]
    pub decimal_handling: DecimalHandling,
    /// Operations not written to the table topics (Debezium's `skipped.operations`).
    /// TRUNCATE is written unless listed: Freshet's warehouse needs it.
    #[serde(default)]
    pub skipped_operations: Vec<SkippedOperation>,
    /// What a TOASTed column an update left untouched holds (Debezium's
    /// `unavailable.value.placeholder`); the envelope's `freshet` field lists it exactly.
    #[serde(default = "placeholder")]
    pub unavailable_value_placeholder: String,
    /// BEGIN/END records on `{topic_prefix}.transaction` and the envelope's `transaction`
    /// block (Debezium's `provide.transaction.metadata`).
    #[serde(default)]
    pub provide_transaction_metadata: bool,
}

fn placeholder() -> String {
    "__debezium_unavailable_value".into()
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            eav: None,
            tombstones_on_delete: true,
            time_precision: TimePrecision::default(),
            decimal_handling: DecimalHandling::default(),
            skipped_operations: Vec::new(),
            unavailable_value_placeholder: placeholder(),
            provide_transaction_metadata: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    /// Each column's own precision: milli- or microsecond types (`io.debezium.time.*`).
    #[default]
    Adaptive,
    /// Kafka Connect's millisecond Date, Time and Timestamp.
    Connect,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalHandling {
    /// Exact: Connect's Decimal, or `io.debezium.data.VariableScaleDecimal` unconstrained.
    #[default]
    Precise,
    Double,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SkippedOperation {
    #[serde(rename = "c")]
    Create,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
    #[serde(rename = "t")]
    Truncate,
}

/// An EAV value table whose rows name their attribute by id, and the catalog that maps the id
/// to a name and a data type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eav {
    pub values: Spanned<TableName>,
    pub catalog: Spanned<TableName>,
    /// The attribute id column, in both tables.
    #[serde(default = "default_attribute_column")]
    pub attribute_column: String,
    #[serde(default = "default_name_column")]
    pub name_column: String,
    #[serde(default = "default_type_column")]
    pub type_column: String,
    /// The Kafka key of value changes: a prefix of the primary key, so that one entity's
    /// history stays ordered on one partition.
    #[serde(default = "default_eav_key")]
    pub key: Vec<String>,
}

fn default_attribute_column() -> String {
    "attribute_id".into()
}
fn default_name_column() -> String {
    "name".into()
}
fn default_type_column() -> String {
    "data_type".into()
}
fn default_eav_key() -> Vec<String> {
    vec!["tenant_id".into(), "entity_id".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Comma-separated `host:port` list.
    #[serde(deserialize_with = "non_blank")]
    pub brokers: Text,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    pub schema_registry: Option<SchemaRegistry>,
    #[serde(default)]
    pub topics: Topics,
    #[serde(default)]
    pub producer: Producer,
    #[serde(default)]
    pub security: Security,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistry {
    pub url: Text,
    pub username: Option<Text>,
    pub password: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u16,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            partitions: DEFAULT_TOPIC_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_linger")]
    pub linger: Duration,
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u32,
    /// Bytes produced but not yet acknowledged by the broker; past it the WAL reader waits.
    #[serde(default = "default_in_flight", deserialize_with = "in_flight_bytes")]
    pub max_in_flight_bytes: u64,
}

impl Default for Producer {
    fn default() -> Self {
        Producer {
            compression: Compression::default(),
            linger: DEFAULT_LINGER,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    #[default]
    Zstd,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// PEM bundle to verify the brokers with, instead of the system roots.
    pub ca_file: Option<Text>,
    pub sasl: Option<Sasl>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub mechanism: Spanned<SaslMechanism>,
    pub username: Option<Text>,
    pub password: Option<Secret>,
    /// AWS region for MSK IAM tokens; credentials come from the default AWS chain.
    pub region: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    AwsMskIam,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batcher {
    /// `file:///absolute/dir` or `s3://bucket/prefix`.
    pub store: Spanned<Text>,
    #[serde(default)]
    pub s3: S3,
    #[serde(default)]
    pub rotation: Rotation,
    #[serde(default)]
    pub compression: ParquetCompression,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    pub region: Option<Text>,
    /// For S3-compatible stores; implies nothing about addressing, see `path_style`.
    pub endpoint: Option<Text>,
    #[serde(default)]
    pub path_style: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    #[serde(default = "default_rotate_rows", deserialize_with = "positive_u64")]
    pub max_rows: u64,
    #[serde(default = "default_rotate_bytes", deserialize_with = "positive_u64")]
    pub max_bytes: u64,
    /// Upper bound; a table's freshness budget lowers it further.
    #[serde(default = "default_rotate_age")]
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_rows: DEFAULT_ROTATE_ROWS,
            max_bytes: DEFAULT_ROTATE_BYTES,
            max_age: DEFAULT_ROTATE_AGE,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    Snappy,
    #[default]
    Zstd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warehouse {
    pub driver: Spanned<WarehouseDriver>,
    #[serde(default = "default_warehouse_schema")]
    pub schema: String,
    pub postgres: Option<PostgresWarehouse>,
    pub redshift_data: Option<Spanned<RedshiftData>>,
    /// How long a delete's tombstone stays in the warehouse: a change older than it,
    /// replayed after it was purged, would bring its row back.
    #[serde(default = "default_tombstone_retention")]
    pub tombstone_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarehouseDriver {
    /// PostgreSQL over its wire protocol: the embedded warehouse.
    Postgres,
    /// Amazon Redshift through the Data API.
    RedshiftData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresWarehouse {
    pub url: PgUrl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftData {
    /// Provisioned cluster; exactly one of this and `workgroup_name`.
    pub cluster_identifier: Option<Text>,
    /// Redshift Serverless workgroup.
    pub workgroup_name: Option<Text>,
    pub database: String,
    /// Secrets Manager ARN with the database credentials (else temporary IAM credentials).
    pub secret_arn: Option<Text>,
    pub db_user: Option<Text>,
    /// Role Redshift assumes to read the Parquet objects during COPY.
    pub copy_iam_role: Text,
    pub region: Option<Text>,
    pub endpoint: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// A class from `freshness_classes`.
    pub freshness: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    #[serde(default = "default_router_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    #[serde(default = "default_replica_poll")]
    pub poll_interval: Duration,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            listen: default_router_listen(),
            replicas: Vec::new(),
            poll_interval: DEFAULT_REPLICA_POLL_INTERVAL,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub name: Spanned<String>,
    pub url: PgUrl,
}

fn yes() -> bool {
    true
}
fn default_slot() -> String {
    DEFAULT_SLOT.to_string()
}
fn default_publication() -> String {
    DEFAULT_PUBLICATION.to_string()
}
fn default_chunk_rows() -> u32 {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}
fn default_heartbeat() -> Duration {
    DEFAULT_HEARTBEAT_INTERVAL
}
fn default_status() -> Duration {
    DEFAULT_STATUS_INTERVAL
}
fn default_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_string()
}
fn default_partitions() -> u32 {
    DEFAULT_TOPIC_PARTITIONS
}
fn default_replication_factor() -> u16 {
    DEFAULT_REPLICATION_FACTOR
}
fn default_linger() -> Duration {
    DEFAULT_LINGER
}
fn default_batch_bytes() -> u32 {
    DEFAULT_BATCH_BYTES
}
fn default_in_flight() -> u64 {
    DEFAULT_MAX_IN_FLIGHT_BYTES
}
fn default_rotate_rows() -> u64 {
    DEFAULT_ROTATE_ROWS
}
fn default_rotate_bytes() -> u64 {
    DEFAULT_ROTATE_BYTES
}
fn default_rotate_age() -> Duration {
    DEFAULT_ROTATE_AGE
}
fn default_consumer_group() -> String {
    DEFAULT_CONSUMER_GROUP.to_string()
}
fn default_tombstone_retention() -> Duration {
    DEFAULT_TOMBSTONE_RETENTION
}
fn default_warehouse_schema() -> String {
    DEFAULT_WAREHOUSE_SCHEMA.to_string()
}
fn default_router_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8650))
}
fn default_replica_poll() -> Duration {
    DEFAULT_REPLICA_POLL_INTERVAL
}

fn non_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let items = Vec::<T>::deserialize(d)?;
    if items.is_empty() {
        return Err(D::Error::custom("must list at least one entry"));
    }
    Ok(items)
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(D::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

fn positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(D::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
    let text = Text::deserialize(d)?;
    if text.0.trim().is_empty() {
        return Err(D::Error::custom("is empty"));
    }
    Ok(text)
}

fn status_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let interval = Duration::deserialize(d)?;
    if interval.0.is_zero() || interval.0.as_secs() >= 30 {
        return Err(D::Error::custom(format!(
            "{interval} is out of range: above 0 and under 30s, well inside wal_sender_timeout"
        )));
    }
    Ok(interval)
}

fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let duration = Duration::deserialize(d)?;
    if duration.0.is_zero() {
        return Err(D::Error::custom("must be above 0"));
    }
    Ok(duration)
}

/// At least one producer batch must fit, or nothing would ever be sent.
fn in_flight_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n < 1 << 20 {
        return Err(D::Error::custom(format!(
            "{n} is too small to hold a batch: use at least 1048576"
        )));
    }
    Ok(n)
}
