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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::change::{Change, Op, PgTimestamp, SourceEvent, Table};
use crate::lsn::Lsn;

pub use encoding::{Encoding, SchemaError};

/// Where a record goes within its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The partitioner hashes the key: one key's changes stay ordered on one partition.
    ByKey,
    /// Tables without a key keep their order on one partition.
    Partition(i32),
    /// A TRUNCATE is a barrier every partition must see.
    AllPartitions,
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
    pipeline: String,
    topic_prefix: String,
    encoding: Encoding,
    catalog: Option<eav::Catalog>,
    /// A tombstone after each delete.
    tombstones: bool,
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
    versions: HashMap<u32, Version>,
}

struct Txn {
    xid: u32,
    commit_ts: PgTimestamp,
}

impl Transform {
    /// A transform without an attribute catalog yet ([`Transform::set_catalog`]).
    pub fn new(
        pipeline: &str,
        topic_prefix: &str,
        encoding: Encoding,
        primary_keys: HashMap<(String, String), Vec<String>>,
        captured: HashSet<(String, String)>,
        tombstones: bool,
    ) -> Transform {
        Transform {
            tombstones,
            pipeline: pipeline.to_owned(),
            topic_prefix: topic_prefix.to_owned(),
            state_topic: eav::state_topic(topic_prefix).into(),
            pending_state: Vec::new(),
            encoding,
            catalog: None,
            primary_keys,
            captured,
            decided: HashMap::new(),
            versions: HashMap::new(),
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
            };
            self.pending_state = catalog
                .histories()
                .map(|h| self.state_record(&h, Lsn(0), 0))
                .chain([marker])
                .collect();
        }
        self.catalog = Some(catalog);
    }

    /// An attribute's history as the state topic's record, keyed by the attribute id; the
    /// identity headers are those of the change that made the newest version.
    fn state_record(&self, history: &eav::History, commit_lsn: Lsn, seq: u32) -> Record {
        Record {
            topic: self.state_topic.clone(),
            key: Some(history.id.to_string().into_bytes()),
            value: Some(serde_json::to_vec(history).unwrap_or_default()),
            routing: Routing::Partition(0),
            commit_lsn,
            seq,
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        out: mpsc::Sender<Output>,
    ) -> Result<(), TransformError> {
        let mut txn = Txn {
            xid: 0,
            commit_ts: 0,
        };
        for r in std::mem::take(&mut self.pending_state) {
            out.send(Output::Record(r))
                .await
                .map_err(|_| TransformError::Closed)?;
        }
        while let Some(event) = events.recv().await {
            match event {
                SourceEvent::Begin { xid, commit_ts, .. } => txn = Txn { xid, commit_ts },
                SourceEvent::Commit {
                    end_lsn, commit_ts, ..
                } => {
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
                    let (schema_records, records) = self.change(&txn, &change).await?;
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
        txn: &Txn,
        change: &Change,
    ) -> Result<(Vec<Record>, Vec<Record>), TransformError> {
        let schema_records = self
            .ensure_version(&change.table, change.id.commit_lsn)
            .await?;
        let Some(v) = self.versions.get(&change.table.oid) else {
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
        let is_values = matches!(v.role, eav::Role::Values { .. });
        let meta = avro::Meta {
            pipeline: &self.pipeline,
            schema: &change.table.schema,
            table: &change.table.name,
            op: change.op.letter(),
            commit_lsn: change.id.commit_lsn.0,
            seq: change.id.seq,
            xid: txn.xid,
            commit_ts_ms: crate::change::unix_micros(txn.commit_ts).div_euclid(1000),
            now_ms: chrono::Utc::now().timestamp_millis(),
        };
        let attribute = is_values.then(|| {
            eav_attr.map(|(id, a)| avro::Attribute {
                id,
                name: &a.name,
                data_type: &a.data_type,
            })
        });
        let mut value = Vec::with_capacity(v.value_prefix.len() + 256);
        value.extend_from_slice(&v.value_prefix);
        v.schema.encode_value(
            &meta,
            change.before.as_ref(),
            change.after.as_ref(),
            attribute,
            &mut value,
        )?;
        let record = |key: Option<Vec<u8>>, routing: Routing, value: Option<Vec<u8>>| Record {
            topic: v.topic.clone(),
            key,
            value,
            routing,
            commit_lsn: change.id.commit_lsn,
            seq: change.id.seq,
        };
        let encode_key = |row: &crate::change::Row| -> Result<Vec<u8>, TransformError> {
            let mut key = Vec::with_capacity(v.key_prefix.len() + 32);
            key.extend_from_slice(&v.key_prefix);
            v.schema.encode_key(row, &mut key)?;
            Ok(key)
        };
        let value = Some(value);
        let records = if change.op == Op::Truncate {
            vec![record(None, Routing::AllPartitions, value)]
        } else if !v.schema.has_key() {
            vec![record(None, Routing::Partition(0), value)]
        } else {
            let new_key = change.after.as_ref().map(&encode_key).transpose()?;
            let old_key = match (&change.before, change.op) {
                (Some(before), Op::Update | Op::Delete) => Some(encode_key(before)?),
                _ => None,
            };
            match (new_key, old_key) {
                // An update that moved the row to another key goes to both keys' partitions,
                // the same record twice: the old key's history ends with it (its `before`),
                // and a later insert of the old key lands after it.
                (Some(new), Some(old)) if new != old => vec![
                    record(Some(old), Routing::ByKey, value.clone()),
                    record(Some(new), Routing::ByKey, value),
                ],
                // A delete, then its tombstone (the key, no value): compaction and KTables
                // forget the key, as after Debezium's delete.
                (None, Some(key)) if self.tombstones => vec![
                    record(Some(key.clone()), Routing::ByKey, value),
                    record(Some(key), Routing::ByKey, None),
                ],
                (Some(key), _) | (None, Some(key)) => {
                    vec![record(Some(key), Routing::ByKey, value)]
                }
                (None, None) => vec![record(None, Routing::Partition(0), value)],
            }
        };
        // The attribute's new history goes first: it is delivered before the commit that
        // depends on it is acknowledged.
        let records = state
            .map(|h| self.state_record(&h, change.id.commit_lsn, change.id.seq))
            .into_iter()
            .chain(records)
            .collect();
        Ok((schema_records, records))
    }

    /// Makes sure the table's current shape has a registered schema version.
    async fn ensure_version(
        &mut self,
        table: &Arc<Table>,
        at: Lsn,
    ) -> Result<Vec<Record>, TransformError> {
        if let Some(v) = self.versions.get_mut(&table.oid) {
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
        let (key_columns, eav) = match (&self.catalog, role) {
            (Some(c), eav::Role::Values { .. }) => (Some(c.key_columns(table)?), true),
            _ => {
                let pk = self
                    .primary_keys
                    .get(&(table.schema.clone(), table.name.clone()))
                    .and_then(|names| {
                        names
                            .iter()
                            .map(|n| table.columns.iter().position(|c| &c.name == n))
                            .collect::<Option<Vec<usize>>>()
                    });
                (pk, false)
            }
        };
        let schema = avro::table_schema(table, key_columns.as_deref(), eav);
        let topic: Arc<str> = topic_name(&self.topic_prefix, &table.schema, &table.name).into();
        let previous = self.versions.get(&table.oid);
        let registered = self
            .encoding
            .register(
                &topic,
                &schema,
                previous.map(|p| (&*p.table, &p.schema)),
                table,
            )
            .await?;
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
