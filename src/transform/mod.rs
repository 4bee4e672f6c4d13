//! transform: each change becomes a keyed Avro record for its table's topic.
//!
//! Receives the source's events in commit order and emits [`Output`]s in the same order: the
//! records of a transaction, then its commit. Schemas follow the Relation messages; a changed
//! table registers a new version, and one that cannot read the previous version's data
//! (BACKWARD) stops the pipeline before anything past it is acknowledged.

pub mod avro;
pub mod decode;
pub mod eav;
pub mod encoding;
pub mod transaction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::change::{Change, Op, PgTimestamp, SourceEvent, Table};
use crate::lsn::Lsn;
use crate::telemetry::names;

pub use encoding::{Encoding, SchemaError};

/// Where a record goes within its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The partitioner hashes the key: one key's changes stay ordered on one partition.
    ByKey,
    /// Tables without a key, TRUNCATE and state records keep their order on one partition.
    Partition(i32),
}

#[derive(Debug)]
pub struct Record {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    /// None: a tombstone.
    pub value: Option<Vec<u8>>,
    pub routing: Routing,
    /// The change identity, carried in the headers.
    pub commit_lsn: Lsn,
    pub seq: u32,
    /// Headers beside the identity: Debezium's `__debezium.oldkey` / `__debezium.newkey`.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

#[derive(Debug)]
pub enum Output {
    Record(Record),
    /// Everything before this belongs to transactions ending at or before `end_lsn`.
    Commit {
        end_lsn: Lsn,
        commit_ts: PgTimestamp,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("encoding a change: {0}")]
    Encode(#[from] avro::EncodeError),
    #[error(transparent)]
    Eav(#[from] eav::MissingColumn),
    #[error("the kafka stage stopped taking records")]
    Closed,
}

impl TransformError {
    pub fn is_transient(&self) -> bool {
        matches!(self, TransformError::Schema(e) if e.is_transient())
    }
}

/// The topic of a table: `{prefix}.{schema}.{table}`, with characters Kafka does not allow
/// in a topic name (anything but `[A-Za-z0-9._-]`) as `_`.
pub fn topic_name(prefix: &str, schema: &str, table: &str) -> String {
    format!("{prefix}.{schema}.{table}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Version {
    table: Arc<Table>,
    schema: avro::TableSchema,
    topic: Arc<str>,
    key_prefix: Vec<u8>,
    value_prefix: Vec<u8>,
    /// What the table is to the EAV mapping, its columns resolved for this shape.
    role: eav::Role,
}

pub struct Transform {
    topic_prefix: String,
    encoding: Encoding,
    options: avro::Options,
    origin: avro::Origin,
    catalog: Option<eav::Catalog>,
    /// A tombstone after each delete.
    tombstones: bool,
    /// Operations not written (config `skipped_operations`), by op letter.
    skipped: HashSet<char>,
    /// The envelope's `transaction` block and the transaction topic's BEGIN and END.
    transaction_metadata: bool,
    /// The transaction topic, once its schemas are registered: (topic, key and value prefix).
    transaction_topic: Option<(Arc<str>, Vec<u8>, Vec<u8>)>,
    /// Where the attribute catalog's state lives, and the records it still needs there.
    state_topic: Arc<str>,
    pending_state: Vec<Record>,
    /// Primary-key column names by (schema, table) of the captured tables (those in
    /// `source.tables`), read at start-up.
    primary_keys: HashMap<(String, String), Vec<String>>,
    captured: HashSet<(String, String)>,
    /// Per relation: whether it is captured; published tables outside `source.tables` are
    /// skipped, each reported once.
    decided: HashMap<u32, bool>,
    /// Per relation, its change and byte counters (found once, not per change).
    counted: HashMap<u32, Counted>,
    versions: HashMap<u32, Version>,
    /// Per relation, columns the catalog calls NOT NULL that streamed a NULL: nullable in
    /// every later version.
    widened: HashMap<u32, HashSet<String>>,
    /// The commit LSN of the last transaction seen: Debezium's `lastCommitLsn`.
    last_commit: Lsn,
}

/// A captured table's counters.
struct Counted {
    table: String,
    /// By Debezium op letter, made on first use.
    changes: HashMap<char, metrics::Counter>,
    bytes: metrics::Counter,
}

impl Counted {
    fn new(t: &Table) -> Counted {
        let table = format!("{}.{}", t.schema, t.name);
        Counted {
            bytes: metrics::counter!(names::CAPTURE_BYTES_TOTAL, "table" => table.clone()),
            changes: HashMap::new(),
            table,
        }
    }

    /// One change and the records written for it (none when its op is skipped).
    fn count(&mut self, op: Op, records: &[Record]) {
        let letter = op.letter();
        self.changes
            .entry(letter)
            .or_insert_with(|| {
                metrics::counter!(names::CAPTURE_CHANGES_TOTAL, "table" => self.table.clone(), "op" => letter.to_string())
            })
            .increment(1);
        let bytes: usize = records
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.bytes.increment(bytes as u64);
    }
}

/// Whether a refusal is of the topic's value subject (a key refused is not about NULLs).
fn first_is_value(e: &SchemaError, topic: &str) -> bool {
    matches!(e, SchemaError::Incompatible { subject, .. } if *subject == format!("{topic}-value"))
}

/// The transaction being transformed.
struct Txn {
    xid: u32,
    commit_lsn: Lsn,
    commit_ts: PgTimestamp,
    /// Debezium's transaction id, `{xid}:{commit LSN}`.
    id: String,
    /// Records written so far, in all and per `schema.table`.
    total: i64,
    per_table: Vec<(String, i64)>,
    /// Its BEGIN record is out.
    began: bool,
}

impl Txn {
    fn new(xid: u32, commit_lsn: Lsn, commit_ts: PgTimestamp, ids: bool) -> Txn {
        Txn {
            xid,
            commit_lsn,
            commit_ts,
            id: if ids {
                format!("{xid}:{}", commit_lsn.0)
            } else {
                String::new()
            },
            total: 0,
            per_table: Vec::new(),
            began: false,
        }
    }

    fn commit_ts_ms(&self) -> i64 {
        crate::change::unix_micros(self.commit_ts).div_euclid(1000)
    }
}

impl Transform {
    /// A transform without an attribute catalog yet ([`Transform::set_catalog`]); `db` is
    /// the source database's name.
    pub fn new(
        topic_prefix: &str,
        db: &str,
        encoding: Encoding,
        primary_keys: HashMap<(String, String), Vec<String>>,
        captured: HashSet<(String, String)>,
        config: &crate::config::Transform,
    ) -> Transform {
        Transform {
            tombstones: config.tombstones_on_delete,
            skipped: config
                .skipped_operations
                .iter()
                .map(|op| {
                    use crate::config::SkippedOperation as S;
                    match op {
                        S::Create => 'c',
                        S::Update => 'u',
                        S::Delete => 'd',
                        S::Truncate => 't',
                    }
                })
                .collect(),
            transaction_metadata: config.provide_transaction_metadata,
            transaction_topic: None,
            options: avro::Options {
                time_precision: config.time_precision,
                decimal_handling: config.decimal_handling,
                placeholder: config.unavailable_value_placeholder.clone(),
            },
            origin: avro::Origin {
                name: topic_prefix.to_owned(),
                db: db.to_owned(),
            },
            topic_prefix: topic_prefix.to_owned(),
            state_topic: eav::state_topic(topic_prefix).into(),
            pending_state: Vec::new(),
            encoding,
            catalog: None,
            primary_keys,
            captured,
            decided: HashMap::new(),
            counted: HashMap::new(),
            versions: HashMap::new(),
            widened: HashMap::new(),
            last_commit: Lsn(0),
        }
    }

    /// Sets the attribute catalog (see [`eav::Catalog::loaded`], [`eav::Catalog::restored`]);
    /// with `publish`, every attribute's history goes to the state topic before anything else
    /// (a state topic that holds none yet).
    pub fn set_catalog(&mut self, catalog: eav::Catalog, publish: bool) {
        if publish {
            // The marker last: a topic without it holds a write cut short, not the state.
            let marker = Record {
                topic: self.state_topic.clone(),
                key: Some(eav::COMPLETE_KEY.to_vec()),
                value: Some(eav::COMPLETE_VALUE.to_vec()),
                routing: Routing::Partition(0),
                commit_lsn: Lsn(0),
                seq: 0,
                headers: Vec::new(),
            };
            self.pending_state = catalog
                .histories()
                .map(|h| Self::state_record(&self.state_topic, &h, Lsn(0), 0))
                .chain([marker])
                .collect();
        }
        self.catalog = Some(catalog);
    }

    /// An attribute's history as the state topic's record, keyed by the attribute id; the
    /// identity headers are those of the change that made the newest version.
    fn state_record(topic: &Arc<str>, history: &eav::History, commit_lsn: Lsn, seq: u32) -> Record {
        Record {
            topic: topic.clone(),
            key: Some(history.id.to_string().into_bytes()),
            value: Some(serde_json::to_vec(history).unwrap_or_default()),
            routing: Routing::Partition(0),
            commit_lsn,
            seq,
            headers: Vec::new(),
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        out: mpsc::Sender<Output>,
    ) -> Result<(), TransformError> {
        let mut txn = Txn::new(0, Lsn(0), 0, false);
        for r in std::mem::take(&mut self.pending_state) {
            out.send(Output::Record(r))
                .await
                .map_err(|_| TransformError::Closed)?;
        }
        while let Some(event) = events.recv().await {
            match event {
                SourceEvent::Begin {
                    xid,
                    commit_lsn,
                    commit_ts,
                } => txn = Txn::new(xid, commit_lsn, commit_ts, self.transaction_metadata),
                SourceEvent::Commit {
                    commit_lsn,
                    end_lsn,
                    commit_ts,
                } => {
                    self.last_commit = commit_lsn;
                    if let Some(end) = self.transaction_record(&txn, true).filter(|_| txn.began) {
                        out.send(Output::Record(end))
                            .await
                            .map_err(|_| TransformError::Closed)?;
                    }
                    out.send(Output::Commit { end_lsn, commit_ts })
                        .await
                        .map_err(|_| TransformError::Closed)?;
                }
                SourceEvent::Change(change) => {
                    let t = &change.table;
                    let captured = *self.decided.entry(t.oid).or_insert_with(|| {
                        let yes = self.captured.contains(&(t.schema.clone(), t.name.clone()));
                        if !yes {
                            warn!(table = %format_args!("{}.{}", t.schema, t.name), "the publication sends a table that is not in source.tables: its changes are not captured");
                        }
                        yes
                    });
                    if !captured {
                        continue;
                    }
                    let (mut schema_records, records) = self.change(&mut txn, &change).await?;
                    self.counted
                        .entry(t.oid)
                        .or_insert_with(|| Counted::new(t))
                        .count(change.op, &records);
                    if txn.total > 0 && !txn.began {
                        schema_records.extend(self.transaction_begin(&mut txn).await?);
                    }
                    for r in schema_records.into_iter().chain(records) {
                        out.send(Output::Record(r))
                            .await
                            .map_err(|_| TransformError::Closed)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The records of one change, after the schema records a new version needs first.
    async fn change(
        &mut self,
        txn: &mut Txn,
        change: &Change,
    ) -> Result<(Vec<Record>, Vec<Record>), TransformError> {
        let oid = change.table.oid;
        let mut schema_records = self
            .ensure_version(&change.table, change.id.commit_lsn, false)
            .await?;
        // A NULL where the catalog (read after the fact) says NOT NULL: the column is nullable
        // from this version on, as the stream shows it was.
        if let Some(v) = self.versions.get(&oid) {
            let nulls = change
                .after
                .as_ref()
                .map(|row| v.schema.nulls_in_required(row))
                .unwrap_or_default();
            if !nulls.is_empty() {
                warn!(table = %format_args!("{}.{}", change.table.schema, change.table.name), columns = ?nulls, at = %change.id.commit_lsn, "NULL in a column the catalog says is NOT NULL (made NOT NULL since?): the columns become nullable in a new schema version");
                self.widened.entry(oid).or_default().extend(nulls);
                schema_records.extend(
                    self.ensure_version(&change.table, change.id.commit_lsn, true)
                        .await?,
                );
            }
        }
        let Some(v) = self.versions.get(&oid) else {
            return Ok((schema_records, Vec::new()));
        };
        let mut eav_attr = None;
        let mut state = None;
        match (v.role, &mut self.catalog) {
            (eav::Role::Catalog(columns), Some(catalog)) => state = catalog.apply(change, columns),
            (eav::Role::Values { attribute }, Some(catalog)) => {
                if let Some(row) = change.after.as_ref().or(change.before.as_ref()) {
                    eav_attr = catalog.lookup(row, attribute);
                }
            }
            _ => {}
        }
        // The attribute's new history goes first: it is delivered before the commit that
        // depends on it is acknowledged, whatever the table topic skips.
        let mut records: Vec<Record> = state
            .map(|h| Self::state_record(&self.state_topic, &h, change.id.commit_lsn, change.id.seq))
            .into_iter()
            .collect();
        // Judged per record written: an update may be a key change, a delete and a create.
        let skipped = |op: Op| self.skipped.contains(&op.letter());
        if change.op != Op::Update && skipped(change.op) {
            return Ok((schema_records, records));
        }
        let encode_key = |row: &crate::change::Row| -> Result<Vec<u8>, TransformError> {
            let mut key = Vec::with_capacity(v.key_prefix.len() + 32);
            key.extend_from_slice(&v.key_prefix);
            v.schema.encode_key(row, &mut key)?;
            Ok(key)
        };
        let (new_key, old_key) = if v.schema.has_key() && change.op != Op::Truncate {
            (
                change.after.as_ref().map(encode_key).transpose()?,
                match (&change.before, change.op) {
                    (Some(before), Op::Update | Op::Delete) => Some(encode_key(before)?),
                    _ => None,
                },
            )
        } else {
            (None, None)
        };
        // Debezium's `["<last commit LSN>","<lsn>"]`, null before the first commit seen.
        let sequence = match self.last_commit {
            Lsn(0) => format!("[null,\"{}\"]", change.lsn.0),
            last => format!("[\"{}\",\"{}\"]", last.0, change.lsn.0),
        };
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let snapshot = if change.op == Op::Read {
            avro::Snapshot::Incremental
        } else {
            avro::Snapshot::False
        };
        let transaction_metadata = self.transaction_metadata;

        let mut encode = |op: Op,
                          before: Option<&crate::change::Row>,
                          after: Option<&crate::change::Row>|
         -> Result<Vec<u8>, TransformError> {
            let transaction = transaction_metadata.then(|| {
                txn.total += 1;
                let (schema, name) = (&change.table.schema, &change.table.name);
                let same = |t: &str| {
                    t.strip_prefix(schema.as_str())
                        .and_then(|r| r.strip_prefix('.'))
                        == Some(name.as_str())
                };
                let n = match txn.per_table.iter().position(|(t, _)| same(t)) {
                    Some(i) => i,
                    None => {
                        txn.per_table.push((format!("{schema}.{name}"), 0));
                        txn.per_table.len() - 1
                    }
                };
                txn.per_table[n].1 += 1;
                avro::Block {
                    id: &txn.id,
                    total_order: txn.total,
                    data_collection_order: txn.per_table[n].1,
                }
            });
            let meta = avro::Meta {
                origin: &self.origin,
                schema: &change.table.schema,
                table: &change.table.name,
                op: op.letter(),
                snapshot,
                lsn: change.lsn.0,
                sequence: &sequence,
                commit_lsn: change.id.commit_lsn.0,
                seq: change.id.seq,
                xid: txn.xid,
                commit_ts_us: crate::change::unix_micros(txn.commit_ts),
                now_ns,
                transaction,
            };
            let attribute = eav_attr.map(|(id, a)| avro::Attribute {
                id,
                name: &a.name,
                data_type: &a.data_type,
            });
            let mut value = Vec::with_capacity(v.value_prefix.len() + 256);
            value.extend_from_slice(&v.value_prefix);
            v.schema
                .encode_value(&meta, before, after, attribute, &mut value)?;
            Ok(value)
        };
        let record = |key: Option<Vec<u8>>, value: Option<Vec<u8>>| Record {
            topic: v.topic.clone(),
            routing: if key.is_some() {
                Routing::ByKey
            } else {
                Routing::Partition(0)
            },
            key,
            value,
            commit_lsn: change.id.commit_lsn,
            seq: change.id.seq,
            headers: Vec::new(),
        };
        let before = change.before.as_ref();
        let after = change.after.as_ref();
        match (new_key, old_key) {
            // The row moved to another key, as Debezium writes it: a delete under the old
            // key (and its tombstone), then a create under the new one, each naming the
            // other key in a header. Upsert consumers keyed by the record key drop the old row.
            (Some(new), Some(old)) if new != old => {
                if !skipped(Op::Delete) {
                    let delete = encode(Op::Delete, before, None)?;
                    let mut d = record(Some(old.clone()), Some(delete));
                    d.headers.push(("__debezium.newkey", new.clone()));
                    records.push(d);
                    if self.tombstones {
                        let mut t = record(Some(old.clone()), None);
                        t.headers.push(("__debezium.newkey", new.clone()));
                        records.push(t);
                    }
                }
                if !skipped(Op::Insert) {
                    let create = encode(Op::Insert, None, after)?;
                    let mut c = record(Some(new), Some(create));
                    c.headers.push(("__debezium.oldkey", old));
                    records.push(c);
                }
            }
            _ if skipped(change.op) => {}
            // A delete, then its tombstone (the key, no value): compaction and KTables
            // forget the key, as after Debezium's delete.
            (None, Some(key)) => {
                records.push(record(
                    Some(key.clone()),
                    Some(encode(change.op, before, after)?),
                ));
                if self.tombstones {
                    records.push(record(Some(key), None));
                }
            }
            (Some(key), _) => {
                records.push(record(Some(key), Some(encode(change.op, before, after)?)))
            }
            // TRUNCATE and keyless tables: one record, on partition 0.
            (None, None) => records.push(record(None, Some(encode(change.op, before, after)?))),
        }
        Ok((schema_records, records))
    }

    /// The BEGIN record of `txn` (first registering the transaction topic's schemas, whose
    /// records come first).
    async fn transaction_begin(&mut self, txn: &mut Txn) -> Result<Vec<Record>, TransformError> {
        let mut records = Vec::new();
        if self.transaction_topic.is_none() {
            let topic = transaction::topic(&self.topic_prefix);
            let registered = self
                .encoding
                .publish(
                    &topic,
                    Some(&transaction::key_schema()),
                    &transaction::value_schema(),
                    || "Debezium's transaction metadata schemas".into(),
                )
                .await?;
            records = registered.records;
            self.transaction_topic =
                Some((topic.into(), registered.key_prefix, registered.value_prefix));
        }
        txn.began = true;
        records.extend(self.transaction_record(txn, false));
        Ok(records)
    }

    /// The BEGIN or END record of `txn` on the transaction topic (None before the topic's
    /// schemas are registered).
    fn transaction_record(&self, txn: &Txn, end: bool) -> Option<Record> {
        let (topic, key_prefix, value_prefix) = self.transaction_topic.as_ref()?;
        let value = if end {
            transaction::end(
                value_prefix,
                &txn.id,
                txn.total,
                &txn.per_table,
                txn.commit_ts_ms(),
            )
        } else {
            transaction::begin(value_prefix, &txn.id, txn.commit_ts_ms())
        };
        Some(Record {
            topic: topic.clone(),
            key: Some(transaction::key(key_prefix, &txn.id)),
            value: Some(value),
            routing: Routing::ByKey,
            commit_lsn: txn.commit_lsn,
            seq: 0,
            headers: Vec::new(),
        })
    }

    /// Makes sure the table's current shape has a registered schema version.
    async fn ensure_version(
        &mut self,
        table: &Arc<Table>,
        at: Lsn,
        widen: bool,
    ) -> Result<Vec<Record>, TransformError> {
        if let Some(v) = self.versions.get_mut(&table.oid).filter(|_| !widen) {
            if Arc::ptr_eq(&v.table, table) {
                return Ok(Vec::new());
            }
            if *v.table == **table {
                v.table = table.clone();
                return Ok(Vec::new());
            }
        }
        let role = match &self.catalog {
            Some(c) => c.role(table)?,
            None => eav::Role::Other,
        };
        let primary_key = self
            .primary_keys
            .get(&(table.schema.clone(), table.name.clone()))
            .and_then(|names| {
                names
                    .iter()
                    .map(|n| table.columns.iter().position(|c| &c.name == n))
                    .collect::<Option<Vec<usize>>>()
            });
        let (key_columns, eav) = match (&self.catalog, role) {
            (Some(c), eav::Role::Values { .. }) => (Some(c.key_columns(table)?), true),
            _ => (primary_key.clone(), false),
        };
        let previous = self.versions.get(&table.oid);
        // A column nullable in the previous version stays nullable: a schema that stopped
        // taking NULL could not read what the previous one wrote.
        let mut nullable = self.widened.get(&table.oid).cloned().unwrap_or_default();
        if let Some(p) = previous {
            nullable.extend(p.schema.nullable_columns());
        }
        let build = |nullable: &HashSet<String>| {
            avro::table_schema(
                &self.topic_prefix,
                table,
                key_columns.as_deref(),
                primary_key.as_deref(),
                eav,
                &self.options,
                nullable,
            )
        };
        let mut schema = build(&nullable);
        let topic: Arc<str> = topic_name(&self.topic_prefix, &table.schema, &table.name).into();
        let previous_shape = previous.map(|p| (&*p.table, &p.schema));
        let registered = match self
            .encoding
            .register(&topic, &schema, previous_shape, table)
            .await
        {
            // A NOT NULL column the earlier version lacked (added NOT NULL, or nullable in a
            // version of an earlier run) cannot read that version's data: as nullable columns
            // they can (key columns are never NULL and stay as they are). Refused again, the
            // first refusal is the one that says what is wrong.
            Err(first @ SchemaError::Incompatible { .. }) => {
                let keys: HashSet<&str> = schema.key_column_names().collect();
                let mut widened = nullable.clone();
                widened.extend(
                    table
                        .columns
                        .iter()
                        .filter(|c| !keys.contains(c.name.as_str()))
                        .map(|c| c.name.clone()),
                );
                let wider = build(&widened);
                if wider.value == schema.value || !first_is_value(&first, &topic) {
                    return Err(first.into());
                }
                schema = wider;
                let registered = self
                    .encoding
                    .register(&topic, &schema, previous_shape, table)
                    .await
                    .map_err(|_| first)?;
                warn!(table = %format_args!("{}.{}", table.schema, table.name), %at, "NOT NULL columns are written nullable: the earlier schema version could not be read otherwise");
                self.widened.insert(table.oid, widened);
                registered
            }
            other => other?,
        };
        info!(
            table = %format_args!("{}.{}", table.schema, table.name),
            topic = %topic,
            %at,
            new_version = previous.is_some(),
            "schema registered"
        );
        if previous.is_some() {
            warn!(table = %format_args!("{}.{}", table.schema, table.name), %at, "table changed shape: new schema version");
        }
        self.versions.insert(
            table.oid,
            Version {
                table: table.clone(),
                schema,
                topic,
                role,
                key_prefix: registered.key_prefix,
                value_prefix: registered.value_prefix,
            },
        );
        Ok(registered.records)
    }
}

#[cfg(test)]
mod tests;
