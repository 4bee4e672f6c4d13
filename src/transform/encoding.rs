//! How a record names its schema: the Confluent wire format (magic 0, registry id) with a
//! Schema Registry, or Avro single-object encoding without one: C3 01 and the CRC-64-AVRO
//! fingerprint of the schema's Parsing Canonical Form, as the Avro specification defines it,
//! each schema then published once to a compacted schema topic (keyed by that fingerprint) so
//! consumers can decode.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
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
        /// Canonical fingerprint → the schema published under it, by this run or earlier ones.
        fingerprints: HashMap<[u8; 8], String>,
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
                fingerprints: HashMap::new(),
                earlier: HashMap::new(),
            },
        })
    }

    /// Seeds the compatibility check of a registry-less pipeline with what earlier runs
    /// published: the schema topic's records (subject and schema JSON), in offset order.
    pub fn remember<'a>(&mut self, published: impl IntoIterator<Item = &'a [u8]>) {
        if let Encoding::SingleObject {
            earlier,
            fingerprints,
            ..
        } = self
        {
            for p in published.into_iter().filter_map(Published::read) {
                fingerprints.insert(p.fingerprint, p.text);
                earlier.insert(p.subject, p.schema);
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
        self.publish(topic, schema.key.as_ref(), &schema.value, || {
            previous
                .map(|(old, _)| difference(old, table))
                .unwrap_or_else(|| "the registry's latest version differs".into())
        })
        .await
    }

    /// Registers (or publishes) a topic's key and value schemas as they are; `difference`
    /// says what changed when the registry refuses them.
    pub async fn publish(
        &mut self,
        topic: &str,
        key: Option<&serde_json::Value>,
        value: &serde_json::Value,
        difference: impl Fn() -> String,
    ) -> Result<Registered, SchemaError> {
        let value_subject = format!("{topic}-value");
        let key = key.map(|k| (format!("{topic}-key"), k));
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
                                    difference: difference(),
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
                // The key first: a refused key leaves no value version behind.
                let key_prefix = match key {
                    Some((subject, json)) => post(&subject, json).await?,
                    None => Vec::new(),
                };
                let value_prefix = post(&value_subject, value).await?;
                Ok(Registered {
                    key_prefix,
                    value_prefix,
                    records: Vec::new(),
                })
            }
            Encoding::SingleObject {
                schema_topic,
                fingerprints,
                ..
            } => {
                let mut records = Vec::new();
                let mut publish = |subject: &str, json: &serde_json::Value| {
                    single_object(fingerprints, schema_topic, &mut records, subject, json)
                };
                let value_prefix = publish(&value_subject, value)?;
                let key_prefix = match key {
                    Some((subject, json)) => publish(&subject, json)?,
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

/// The single-object header of `json` under `subject`, adding the schema topic's record when
/// it is new. The fingerprint is of the Parsing Canonical Form, which drops logical types and
/// Freshet's `pg_type` attributes: two versions that differ only there (timestamp and
/// timestamptz, a decimal's scale) would share it, and one would overwrite the other in the
/// compacted topic. The later one then gets a record name of its own (the name plus a hash of
/// its full text, the same in every run), so no fingerprint maps to two schemas.
fn single_object(
    fingerprints: &mut HashMap<[u8; 8], String>,
    schema_topic: &Arc<str>,
    records: &mut Vec<Record>,
    subject: &str,
    json: &serde_json::Value,
) -> Result<Vec<u8>, SchemaError> {
    let original = json.to_string();
    let mut json = json.clone();
    for _ in 0..4 {
        let text = json.to_string();
        parse(subject, &json)?;
        let fingerprint = canonical_fingerprint(&json);
        let mut prefix = SINGLE_OBJECT_MAGIC.to_vec();
        prefix.extend_from_slice(&fingerprint);
        match fingerprints.get(&fingerprint) {
            Some(published) if *published == text => return Ok(prefix),
            Some(_) => {
                let name = json["name"].as_str().unwrap_or("Schema");
                let hash = crc64_avro(format!("{original}{text}").as_bytes());
                json["name"] = format!("{name}_{hash:016x}").into();
            }
            None => {
                let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
                records.push(Record {
                    topic: schema_topic.clone(),
                    key: Some(hex.clone().into_bytes()),
                    // The schema as built, with the pg_type attributes a reader needs.
                    value: Some(
                        json!({"subject": subject, "fingerprint": hex, "schema": text})
                            .to_string()
                            .into_bytes(),
                    ),
                    routing: Routing::Partition(0),
                    commit_lsn: Lsn(0),
                    seq: 0,
                    headers: Vec::new(),
                });
                fingerprints.insert(fingerprint, text);
                return Ok(prefix);
            }
        }
    }
    Err(SchemaError::Invalid {
        subject: subject.to_owned(),
        error: "its canonical fingerprint keeps colliding with other schemas".into(),
    })
}

/// The Avro specification's single-object fingerprint: CRC-64-AVRO of the Parsing Canonical
/// Form, little-endian.
pub fn canonical_fingerprint(schema: &serde_json::Value) -> [u8; 8] {
    crc64_avro(canonical_form(schema).as_bytes()).to_le_bytes()
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema, as the Avro specification defines it: full names,
/// only `name`, `type`, `fields`, `symbols`, `items`, `values` and `size`, in that order, no
/// whitespace. (apache-avro's own keeps logical types and a decimal's precision and scale, so
/// its fingerprints differ from the Java and Python implementations'.)
pub fn canonical_form(schema: &serde_json::Value) -> String {
    let mut out = String::new();
    canonical(schema, "", &mut out);
    out
}

fn canonical(schema: &serde_json::Value, namespace: &str, out: &mut String) {
    use serde_json::Value;
    let quote = |s: &str| Value::from(s).to_string();
    let fullname = |name: &str, namespace: &str| {
        if name.contains('.') || namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{namespace}.{name}")
        }
    };
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => out.push_str(&quote(name)),
        Value::String(name) => out.push_str(&quote(&fullname(name, namespace))),
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(b, namespace, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let kind = o.get("type").cloned().unwrap_or(Value::Null);
            match kind.as_str() {
                Some(kind @ ("record" | "error" | "enum" | "fixed")) => {
                    let own = o
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(namespace);
                    let name = fullname(o.get("name").and_then(Value::as_str).unwrap_or(""), own);
                    let inner = name.rsplit_once('.').map_or("", |(ns, _)| ns).to_owned();
                    out.push_str(&format!(
                        "{{\"name\":{},\"type\":{}",
                        quote(&name),
                        quote(kind)
                    ));
                    match kind {
                        "enum" => {
                            let symbols = o.get("symbols").cloned().unwrap_or(Value::Null);
                            out.push_str(&format!(",\"symbols\":{symbols}"));
                        }
                        "fixed" => {
                            let size = o.get("size").cloned().unwrap_or(Value::Null);
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            out.push_str(",\"fields\":[");
                            let fields = o.get("fields").and_then(Value::as_array);
                            for (i, f) in fields.into_iter().flatten().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let fname = f.get("name").and_then(Value::as_str).unwrap_or("");
                                out.push_str(&format!("{{\"name\":{},\"type\":", quote(fname)));
                                canonical(f.get("type").unwrap_or(&Value::Null), &inner, out);
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                Some("array") => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    canonical(o.get("items").unwrap_or(&Value::Null), namespace, out);
                    out.push('}');
                }
                Some("map") => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    canonical(o.get("values").unwrap_or(&Value::Null), namespace, out);
                    out.push('}');
                }
                // A primitive with attributes (a logical type, a decimal's precision), or a
                // nested type: only the type counts.
                _ => canonical(&kind, namespace, out),
            }
        }
        other => out.push_str(&other.to_string()),
    }
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

/// One record of the schema topic, as [`single_object`] writes it.
struct Published {
    subject: String,
    text: String,
    schema: Schema,
    fingerprint: [u8; 8],
}

impl Published {
    /// A record that is not one (another writer's, or cut short) is skipped.
    fn read(payload: &[u8]) -> Option<Published> {
        let doc: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let text = doc["schema"].as_str()?.to_owned();
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(Published {
            subject: doc["subject"].as_str()?.to_owned(),
            schema: Schema::parse(&json).ok()?,
            fingerprint: canonical_fingerprint(&json),
            text,
        })
    }
}

type DatumReader<'s> = GenericDatumReader<'s>;

self_cell::self_cell!(
    /// A writer schema and its Avro reader, resolved once: resolving the schema's names for
    /// every record was much of a reader's time.
    struct Resolved {
        owner: Arc<Schema>,
        #[covariant]
        dependent: DatumReader,
    }
);

impl Resolved {
    fn of(schema: Schema) -> Result<Resolved, apache_avro::Error> {
        Resolved::try_new(Arc::new(schema), |s| GenericDatumReader::builder(s).build())
    }
}

/// The reader's side of both framings: the schema a record names, by registry id or by
/// single-object fingerprint, and the record decoded with it. The schema topic's records are
/// handed in by whoever reads Kafka ([`Schemas::learn`]).
pub struct Schemas {
    registry: Option<(String, SrSettings)>,
    by_id: HashMap<u32, Resolved>,
    by_fingerprint: HashMap<[u8; 8], Resolved>,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A fingerprint not learned yet: learn the schema topic, then try again.
    #[error("fingerprint {} is not among the published schemas", hex(.0))]
    UnknownFingerprint([u8; 8]),
    /// The registry did not answer: a later attempt can pass.
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Other(String),
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Schemas {
    pub fn new(kafka: &Kafka) -> Result<Schemas, SchemaError> {
        Ok(Schemas {
            registry: match &kafka.schema_registry {
                Some(r) => Some((r.url.0.clone(), registry_settings(r)?)),
                None => None,
            },
            by_id: HashMap::new(),
            by_fingerprint: HashMap::new(),
        })
    }

    /// Takes the schema topic's record values (subject, fingerprint, schema).
    pub fn learn<'a>(&mut self, published: impl IntoIterator<Item = &'a [u8]>) {
        for p in published.into_iter().filter_map(Published::read) {
            // A schema already known keeps its Arc: readers tell versions apart by it.
            if let std::collections::hash_map::Entry::Vacant(slot) =
                self.by_fingerprint.entry(p.fingerprint)
            {
                match Resolved::of(p.schema) {
                    Ok(resolved) => {
                        slot.insert(resolved);
                    }
                    Err(error) => {
                        tracing::warn!(subject = %p.subject, %error, "a published schema has no Avro reader")
                    }
                }
            }
        }
    }

    /// Decodes one key or value: Confluent wire format or single-object encoding.
    pub async fn decode(
        &mut self,
        bytes: &[u8],
    ) -> Result<(Arc<Schema>, apache_avro::types::Value), LookupError> {
        let other = |e: String| LookupError::Other(e);
        let (schema, mut body) = if bytes.len() >= 5 && bytes[0] == 0 {
            let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            if !self.by_id.contains_key(&id) {
                let Some((url, settings)) = &self.registry else {
                    return Err(other(format!(
                        "schema id {id}, but no schema_registry is configured"
                    )));
                };
                let registered = get_schema_by_id(id, settings).await.map_err(|e| {
                    let why = format!("schema registry {url}: schema id {id}: {e}");
                    // An id the registry does not know (404) will not appear with time.
                    if e.retriable {
                        LookupError::Registry(why)
                    } else {
                        LookupError::Other(why)
                    }
                })?;
                let resolved = Schema::parse_str(&registered.schema)
                    .and_then(Resolved::of)
                    .map_err(|e| other(format!("schema id {id}: {e}")))?;
                self.by_id.insert(id, resolved);
            }
            (&self.by_id[&id], &bytes[5..])
        } else if bytes.len() >= 10 && bytes[..2] == SINGLE_OBJECT_MAGIC {
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&bytes[2..10]);
            match self.by_fingerprint.get(&fp) {
                Some(s) => (s, &bytes[10..]),
                None => return Err(LookupError::UnknownFingerprint(fp)),
            }
        } else {
            return Err(other(
                "neither the Confluent wire format nor Avro single-object encoding".into(),
            ));
        };
        let value = schema
            .borrow_dependent()
            .read_value(&mut body)
            .map_err(|e| other(e.to_string()))?;
        Ok((Arc::clone(schema.borrow_owner()), value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn single_object_fingerprints_are_of_the_canonical_form_and_never_shared() {
        let topic: Arc<str> = "p._schemas".into();
        let version = |logical: &str| {
            json!({"type": "record", "name": "Envelope", "namespace": "p.public.t", "fields": [
                {"name": "at", "type": {"type": "long", "logicalType": logical}}]})
        };
        let (v1, v2) = (
            version("timestamp-micros"),
            version("local-timestamp-micros"),
        );
        let mut fingerprints = HashMap::new();
        let mut records = Vec::new();
        let header = |fingerprints: &mut HashMap<[u8; 8], String>,
                      records: &mut Vec<Record>,
                      json: &serde_json::Value| {
            single_object(fingerprints, &topic, records, "p.public.t-value", json).unwrap()
        };
        let h1 = header(&mut fingerprints, &mut records, &v1);
        // fastavro's fingerprint(to_parsing_canonical_form(v1), "CRC-64-AVRO"), as bytes.
        // (apache-avro's differs: its canonical form keeps the logical type.)
        assert_eq!(h1[..2], SINGLE_OBJECT_MAGIC);
        assert_eq!(h1[2..], [136, 167, 156, 19, 51, 38, 232, 71]);
        // Same canonical form, another schema: published under a name of its own.
        let h2 = header(&mut fingerprints, &mut records, &v2);
        assert_ne!(h1, h2);
        assert_eq!(records.len(), 2);
        let published = |r: &Record| -> serde_json::Value {
            let doc: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            serde_json::from_str(doc["schema"].as_str().unwrap()).unwrap()
        };
        assert_eq!(published(&records[0]), v1);
        let renamed = published(&records[1]);
        assert!(renamed["name"].as_str().unwrap().starts_with("Envelope_"));
        assert_eq!(renamed["fields"], v2["fields"]);
        // Registered again, in this run or in a new one that read the schema topic: the same
        // headers, nothing new to publish.
        assert_eq!(header(&mut fingerprints, &mut records, &v1), h1);
        assert_eq!(header(&mut fingerprints, &mut records, &v2), h2);
        assert_eq!(records.len(), 2);
        let mut next_run = HashMap::new();
        for r in &records {
            let json = published(r);
            next_run.insert(canonical_fingerprint(&json), json.to_string());
        }
        let mut none = Vec::new();
        assert_eq!(header(&mut next_run, &mut none, &v2), h2);
        assert_eq!(header(&mut next_run, &mut none, &v1), h1);
        assert!(none.is_empty());
    }

    #[test]
    fn the_parsing_canonical_form_is_the_specification_s() {
        let schema = json!({
            "type": "record", "name": "Envelope", "namespace": "p.public.t", "doc": "dropped",
            "fields": [
                {"name": "n", "default": null, "pg_type": {"oid": 1700},
                 "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
                          {"type": "enum", "name": "NonFinite", "namespace": "freshet", "symbols": ["NaN"]}]},
                {"name": "again", "type": ["null", "freshet.NonFinite"]},
                {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
                    {"name": "tags", "type": {"type": "array", "items": "string"}},
                    {"name": "attrs", "type": {"type": "map", "values": {"type": "long", "logicalType": "timestamp-micros"}}},
                    {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 16}}]}}
            ]
        });
        // What fastavro's to_parsing_canonical_form prints for the same schema (checked).
        let expected = concat!(
            r#"{"name":"p.public.t.Envelope","type":"record","fields":["#,
            r#"{"name":"n","type":["null","bytes",{"name":"freshet.NonFinite","type":"enum","symbols":["NaN"]}]},"#,
            r#"{"name":"again","type":["null","freshet.NonFinite"]},"#,
            r#"{"name":"inner","type":{"name":"p.public.t.Inner","type":"record","fields":["#,
            r#"{"name":"tags","type":{"type":"array","items":"string"}},"#,
            r#"{"name":"attrs","type":{"type":"map","values":"long"}},"#,
            r#"{"name":"id","type":{"name":"p.public.t.Id","type":"fixed","size":16}}]}}]}"#
        );
        assert_eq!(canonical_form(&schema), expected);
        // Where apache-avro's form is the specification's (no decimal), they agree.
        let plain = json!({"type": "record", "name": "r", "namespace": "n", "fields": [
            {"name": "a", "type": ["null", "long"]}, {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}]});
        let theirs = Schema::parse(&plain).unwrap().canonical_form();
        assert_eq!(canonical_form(&plain), theirs);
    }

    #[test]
    fn crc64_avro_is_the_specification_s_rabin_fingerprint() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let theirs = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
        let ours = crc64_avro(schema.canonical_form().as_bytes()).to_le_bytes();
        assert_eq!(theirs, ours);
    }
}
