//! How a record names its schema: the Confluent wire format (magic 0, registry id) with a
//! Schema Registry, or Avro single-object encoding (C3 01, CRC-64-AVRO fingerprint) without one,
//! each schema then published once to a compacted schema topic so consumers can decode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::json;

use super::avro::TableSchema;
use super::{Record, Routing};
use crate::change::Table;
use crate::config::Kafka;
use crate::lsn::Lsn;

pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// The topic holding every schema of a registry-less pipeline: `{prefix}._schemas`.
pub fn schema_topic(prefix: &str) -> String {
    format!("{prefix}._schemas")
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "subject {subject}: the new schema cannot read data written with the previous version (BACKWARD): {difference}; {detail}. Nothing past this change is acknowledged: make the change compatible (add columns nullable, widen types) or start a new topic"
    )]
    Incompatible {
        subject: String,
        difference: String,
        detail: String,
    },
    #[error("schema registry {url}: subject {subject}: {error}")]
    Registry {
        url: String,
        subject: String,
        error: String,
        transient: bool,
    },
    #[error("subject {subject}: Freshet built an invalid Avro schema (a bug): {error}")]
    Invalid { subject: String, error: String },
    #[error("kafka.schema_registry: {0}")]
    Config(String),
}

impl SchemaError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SchemaError::Registry {
                transient: true,
                ..
            }
        )
    }
}

pub enum Encoding {
    Registry {
        url: String,
        settings: SrSettings,
    },
    SingleObject {
        schema_topic: Arc<str>,
        published: HashSet<Vec<u8>>,
        /// Per value subject, the last schema an earlier run published to the schema topic:
        /// the first version of this run must read its data too.
        earlier: HashMap<String, Schema>,
    },
}

/// What a new schema version needs: the bytes before each key and value, and the records
/// to publish first.
pub struct Registered {
    pub key_prefix: Vec<u8>,
    pub value_prefix: Vec<u8>,
    pub records: Vec<Record>,
}

impl Encoding {
    pub fn from_config(kafka: &Kafka) -> Result<Encoding, SchemaError> {
        Ok(match &kafka.schema_registry {
            Some(r) => Encoding::Registry {
                url: r.url.0.clone(),
                settings: registry_settings(r)?,
            },
            None => Encoding::SingleObject {
                schema_topic: schema_topic(&kafka.topic_prefix).into(),
                published: HashSet::new(),
                earlier: HashMap::new(),
            },
        })
    }

    /// Seeds the compatibility check of a registry-less pipeline with what earlier runs
    /// published: the schema topic's records (subject and schema JSON), in offset order.
    pub fn remember(&mut self, published: impl IntoIterator<Item = (String, String)>) {
        if let Encoding::SingleObject { earlier, .. } = self {
            for (subject, schema) in published {
                if let Ok(parsed) = Schema::parse_str(&schema) {
                    earlier.insert(subject, parsed);
                }
            }
        }
    }

    pub async fn register(
        &mut self,
        topic: &str,
        schema: &TableSchema,
        previous: Option<(&Table, &TableSchema)>,
        table: &Table,
    ) -> Result<Registered, SchemaError> {
        let value_subject = format!("{topic}-value");
        let value = parse(&value_subject, &schema.value)?;
        // The registry judges compatibility itself: it knows every earlier version, also
        // those of earlier runs, and the subject's configured level.
        if let Encoding::SingleObject { earlier, .. } = &*self {
            let (old, difference) = match previous {
                Some((old_table, old)) => (
                    Some(parse(&value_subject, &old.value)?),
                    difference(old_table, table),
                ),
                None => (
                    earlier.get(&value_subject).cloned(),
                    "differs from the last version published by an earlier run".to_owned(),
                ),
            };
            if let Some(old) = old {
                if let Err(detail) = backward(&old, &value) {
                    return Err(SchemaError::Incompatible {
                        subject: value_subject,
                        difference,
                        detail,
                    });
                }
            }
        }
        let key = schema.key.as_ref().map(|k| (format!("{topic}-key"), k));
        match self {
            Encoding::Registry { url, settings } => {
                let post = async |subject: &str, json: &serde_json::Value| {
                    let supplied = SuppliedSchema::new(None, SchemaType::Avro, json.to_string());
                    post_schema(settings, subject.to_owned(), supplied)
                        .await
                        .map(|r| confluent_prefix(r.id))
                        .map_err(|e| {
                            let text = format!("{e}");
                            if text.contains("409") {
                                SchemaError::Incompatible {
                                    subject: subject.to_owned(),
                                    difference: previous
                                        .map(|(old, _)| difference(old, table))
                                        .unwrap_or_else(|| {
                                            "the registry's latest version differs".into()
                                        }),
                                    detail: text,
                                }
                            } else {
                                SchemaError::Registry {
                                    url: url.clone(),
                                    subject: subject.to_owned(),
                                    // 4xx is the request's fault, except a timeout or
                                    // throttling; anything else (5xx, no answer, an
                                    // unreadable one) may pass.
                                    transient: e.retriable
                                        || !text.contains("status 4")
                                        || text.contains("status 408")
                                        || text.contains("status 429"),
                                    error: text,
                                }
                            }
                        })
                };
                let value_prefix = post(&value_subject, &schema.value).await?;
                let key_prefix = match key {
                    Some((subject, json)) => post(&subject, json).await?,
                    None => Vec::new(),
                };
                Ok(Registered {
                    key_prefix,
                    value_prefix,
                    records: Vec::new(),
                })
            }
            Encoding::SingleObject {
                schema_topic,
                published,
                ..
            } => {
                let mut records = Vec::new();
                let mut publish = |subject: &str, json: &serde_json::Value| -> Vec<u8> {
                    // Of the schema as published: the Parsing Canonical Form drops logical
                    // types and `pg_type`, so timestamp and timestamptz, or text and jsonb,
                    // would share a fingerprint and one would overwrite the other.
                    let fingerprint = crc64_avro(json.to_string().as_bytes())
                        .to_le_bytes()
                        .to_vec();
                    let mut prefix = SINGLE_OBJECT_MAGIC.to_vec();
                    prefix.extend_from_slice(&fingerprint);
                    if published.insert(fingerprint.clone()) {
                        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
                        records.push(Record {
                            topic: schema_topic.clone(),
                            key: Some(hex.clone().into_bytes()),
                            // The schema as built, with the pg_type attributes a reader needs.
                            value: json!({"subject": subject, "fingerprint": hex, "schema": json.to_string()})
                                .to_string()
                                .into_bytes(),
                            routing: Routing::Partition(0),
                            commit_lsn: Lsn(0),
                            seq: 0,
                        });
                    }
                    prefix
                };
                let value_prefix = publish(&value_subject, &schema.value);
                let key_prefix = match key {
                    Some((subject, json)) => {
                        parse(&subject, json)?;
                        publish(&subject, json)
                    }
                    None => Vec::new(),
                };
                Ok(Registered {
                    key_prefix,
                    value_prefix,
                    records,
                })
            }
        }
    }
}

pub fn registry_settings(r: &crate::config::SchemaRegistry) -> Result<SrSettings, SchemaError> {
    let mut builder = SrSettings::new_builder(r.url.0.clone());
    builder.set_timeout(Duration::from_secs(10));
    if let Some(user) = &r.username {
        builder.set_basic_authorization(&user.0, r.password.as_ref().map(|p| p.expose()));
    }
    builder
        .build()
        .map_err(|e| SchemaError::Config(e.to_string()))
}

fn confluent_prefix(id: u32) -> Vec<u8> {
    let mut p = vec![0u8];
    p.extend_from_slice(&id.to_be_bytes());
    p
}

fn parse(subject: &str, json: &serde_json::Value) -> Result<Schema, SchemaError> {
    Schema::parse(json).map_err(|e| SchemaError::Invalid {
        subject: subject.to_owned(),
        error: e.to_string(),
    })
}

/// What changed between two shapes of a table, column by column.
pub fn difference(old: &Table, new: &Table) -> String {
    let mut parts = Vec::new();
    for c in &new.columns {
        match old.columns.iter().find(|o| o.name == c.name) {
            None => parts.push(format!("column {} added", c.name)),
            Some(o) if o.type_oid != c.type_oid || o.type_modifier != c.type_modifier => parts
                .push(format!(
                    "column {}: type {} (modifier {}) became {} (modifier {})",
                    c.name, o.type_oid, o.type_modifier, c.type_oid, c.type_modifier
                )),
            Some(_) => {}
        }
    }
    for o in &old.columns {
        if !new.columns.iter().any(|c| c.name == o.name) {
            parts.push(format!("column {} dropped", o.name));
        }
    }
    if parts.is_empty() {
        "no column changed (key or identity changed)".into()
    } else {
        parts.join(", ")
    }
}

/// BACKWARD: the new schema reads what the old one wrote. apache-avro's check accepts a union
/// when any branch matches; a column's union must read every branch the old one could write.
pub fn backward(old: &Schema, new: &Schema) -> Result<(), String> {
    SchemaCompatibility::can_read(old, new).map_err(|e| e.to_string())?;
    let (Some(old_fields), Some(new_fields)) = (row_fields(old), row_fields(new)) else {
        return Ok(());
    };
    for w in old_fields {
        let Some(r) = new_fields.iter().find(|r| r.name == w.name) else {
            continue;
        };
        let (Schema::Union(wu), Schema::Union(ru)) = (&w.schema, &r.schema) else {
            continue;
        };
        for branch in wu.variants() {
            if !ru.variants().iter().any(|rb| reads(branch, rb)) {
                return Err(format!(
                    "column {}: the new type cannot read the old {:?}",
                    w.name,
                    apache_avro::schema::SchemaKind::from(branch)
                ));
            }
        }
    }
    Ok(())
}

fn reads(writer: &Schema, reader: &Schema) -> bool {
    match (named(writer), named(reader)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => SchemaCompatibility::can_read(writer, reader).is_ok(),
        _ => false,
    }
}

fn named(s: &Schema) -> Option<String> {
    match s {
        Schema::Enum(e) => Some(e.name.fullname(None)),
        Schema::Ref { name } => Some(name.fullname(None)),
        _ => None,
    }
}

/// The row record's fields of an envelope schema.
fn row_fields(envelope: &Schema) -> Option<&[apache_avro::schema::RecordField]> {
    let Schema::Record(r) = envelope else {
        return None;
    };
    let before = r.fields.iter().find(|f| f.name == "before")?;
    let Schema::Union(u) = &before.schema else {
        return None;
    };
    u.variants().iter().find_map(|v| match v {
        Schema::Record(r) => Some(r.fields.as_slice()),
        _ => None,
    })
}

/// CRC-64-AVRO, the Avro specification's Rabin fingerprint, of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            *slot = fp;
        }
        t
    });
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_avro_is_the_specification_s_rabin_fingerprint() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let theirs = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
        let ours = super::crc64_avro(schema.canonical_form().as_bytes()).to_le_bytes();
        assert_eq!(theirs, ours);
    }
}
