//! Avro schemas of a table in Debezium's PostgreSQL record format, and the binary encoding of
//! its changes.
//!
//! The envelope is Debezium's (`before`, `after`, `source`, `transaction`, `op`, `ts_ms`,
//! `ts_us`, `ts_ns`), its schemas named `{topic_prefix}.{schema}.{table}.Key / Value /
//! Envelope` and annotated as Confluent's AvroConverter writes Debezium's Connect schemas, so
//! a Debezium consumer reads Freshet's records as they are. Columns are `T` when NOT NULL and
//! `["null", T]` otherwise, typed as [`column`] says.
//!
//! One optional field is Freshet's own, `freshet` (readers that do not know it skip it under
//! Avro resolution): the change identity (commit LSN, position in the transaction), the
//! columns a TOASTed update left unchanged (their column holds Debezium's placeholder), the
//! exact PostgreSQL text of every value Debezium's form loses (NaN, ±infinity, money, …),
//! and for the EAV value table the attribute. Freshet's own stages read that field, never the
//! placeholder. Each field carries `pg_type` so a reader can restore the exact value.
//!
//! The hot path writes Avro's binary encoding directly from the change (it is a small,
//! fixed format); `apache-avro` parses every schema Freshet builds, fingerprints it, checks
//! compatibility and decodes, and the tests decode what this encoder writes with it.

pub mod column;

use std::collections::HashSet;

use serde_json::{json, Value as Json};

use crate::change::{Column, Datum, Row, Table, TypeInfo, TypeKind};
use crate::kind::ColumnKind;
pub use column::{decimal_text, numeric_typmod, Enc, Options};

/// Where an encoded value goes wrong: names the table and column.
#[derive(Debug, thiserror::Error)]
#[error("{table}.{column}: {why}")]
pub struct EncodeError {
    pub table: String,
    pub column: String,
    pub why: String,
}

/// How one column of the row record is written.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    enc: Enc,
    nullable: bool,
}

/// The schemas of one table version, and how to write its rows.
#[derive(Debug)]
pub struct TableSchema {
    pub value: Json,
    pub key: Option<Json>,
    layouts: Vec<Layout>,
    key_columns: Vec<usize>,
    table: String,
    columns: Vec<String>,
    placeholder: String,
    eav: bool,
}

/// The Debezium `source` fields that are the same for every change of a pipeline.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The logical server name: the topic prefix, as Debezium's `name`.
    pub name: String,
    pub db: String,
}

/// `source.snapshot`: Freshet's snapshot reads interleave with the stream under watermarks,
/// as Debezium's incremental snapshots do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshot {
    False,
    Incremental,
}

/// Debezium's `transaction` block.
pub struct Block<'a> {
    /// `{xid}:{commit LSN as a number}`.
    pub id: &'a str,
    pub total_order: i64,
    pub data_collection_order: i64,
}

/// What the envelope says about where a change came from.
pub struct Meta<'a> {
    pub origin: &'a Origin,
    pub schema: &'a str,
    pub table: &'a str,
    pub op: char,
    pub snapshot: Snapshot,
    /// The change's own WAL position (Debezium's `source.lsn`).
    pub lsn: u64,
    /// Debezium's `source.sequence`: `["<last commit LSN>","<lsn>"]`.
    pub sequence: &'a str,
    pub commit_lsn: u64,
    pub seq: u32,
    pub xid: u32,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: i64,
    /// When Freshet wrote the record, nanoseconds since the Unix epoch.
    pub now_ns: i64,
    pub transaction: Option<Block<'a>>,
}

/// The EAV enrichment of a value change.
pub struct Attribute<'a> {
    pub id: i64,
    pub name: &'a str,
    pub data_type: &'a str,
}

/// One row image's exactness: the unchanged columns and the exact text of lossy values.
#[derive(Default)]
struct Image {
    unchanged: Vec<usize>,
    /// None: SQL NULL where the column is NOT NULL (the old row of a non-FULL identity,
    /// whose other columns PostgreSQL does not send).
    exact: Vec<(usize, Option<String>)>,
}

/// Avro names are `[A-Za-z_][A-Za-z0-9_]*`; PostgreSQL identifiers are wider.
pub fn avro_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `{topic_prefix}.{schema}.{table}`, each part an Avro name: the namespace of a table's
/// Key, Value and Envelope.
pub fn namespace(prefix: &str, table: &Table) -> String {
    prefix
        .split('.')
        .chain([table.schema.as_str(), table.name.as_str()])
        .map(avro_name)
        .collect::<Vec<_>>()
        .join(".")
}

const SOURCE: &str = "io.debezium.connector.postgresql.Source";

fn source_schema() -> Json {
    let optional =
        |name: &str, ty: &str| json!({"name": name, "type": ["null", ty], "default": null});
    json!({
        "type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
        "fields": [
            {"name": "version", "type": "string"},
            {"name": "connector", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                "connect.parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
                "connect.default": "false", "connect.name": "io.debezium.data.Enum"}, "null"],
             "default": "false"},
            {"name": "db", "type": "string"},
            optional("sequence", "string"),
            optional("ts_us", "long"),
            optional("ts_ns", "long"),
            {"name": "schema", "type": "string"},
            {"name": "table", "type": "string"},
            optional("txId", "long"),
            optional("lsn", "long"),
            optional("xmin", "long"),
        ],
        "connect.version": 1,
        "connect.name": SOURCE,
    })
}

fn change_schema(eav: bool) -> Json {
    let image = |name: &str| {
        json!({"name": name, "type": {"type": "record", "name": format!("{}Image", capitalise(name)), "fields": [
            {"name": "unchanged", "type": {"type": "array", "items": "string"},
             "doc": "TOASTed columns the update did not touch: their column holds the placeholder"},
            {"name": "exact", "type": {"type": "map", "values": ["null", "string"]},
             "doc": "PostgreSQL's text of each value Debezium's form does not hold exactly (null: NULL)"}
        ]}})
    };
    let mut fields = vec![
        json!({"name": "lsn", "type": "long", "doc": "commit LSN of the change's transaction"}),
        json!({"name": "sequence", "type": "long", "doc": "position of the change in its transaction"}),
        image("before"),
        image("after"),
    ];
    if eav {
        fields.push(
            json!({"name": "attribute", "default": null, "type": ["null", {
            "type": "record", "name": "Attribute", "fields": [
                {"name": "id", "type": "long"},
                {"name": "name", "type": "string"},
                {"name": "data_type", "type": "string"}
            ]}]}),
        );
    }
    json!({"type": "record", "name": "Change", "namespace": "freshet",
           "doc": "Freshet's exact account of the change", "fields": fields})
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Builds the schemas of `table`; `key_columns` overrides the replica identity as the key
/// (the primary key, or for the EAV value table a prefix of it); `primary_key` is the
/// table's primary key when it has one; `eav` adds the attribute to Freshet's field;
/// `nullable` forces columns nullable whatever the catalog says.
pub fn table_schema(
    prefix: &str,
    table: &Table,
    key_columns: Option<&[usize]>,
    primary_key: Option<&[usize]>,
    eav: bool,
    options: &Options,
    nullable: &HashSet<String>,
) -> TableSchema {
    let ns = namespace(prefix, table);
    let mut defined = HashSet::new();
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut layouts = Vec::with_capacity(table.columns.len());
    // What identifies a row, for the warehouse's merge: the primary key, else the replica
    // identity's index; a table with neither (FULL identity alone) is a multiset.
    let row_key: Vec<usize> = match primary_key {
        Some(k) => k.to_vec(),
        None if table.replica_identity == b'f' => Vec::new(),
        None => (0..table.columns.len())
            .filter(|&i| table.columns[i].key)
            .collect(),
    };
    for (i, c) in table.columns.iter().enumerate() {
        let (ty, enc) = column::column_type(
            &ColumnKind::of(&c.ty, c.type_modifier),
            options,
            &mut defined,
        );
        let optional = c.nullable || nullable.contains(&c.name);
        let mut f = field(c, ty, optional);
        if let Some(n) = row_key.iter().position(|&k| k == i) {
            f["pg_key"] = json!(n + 1);
        }
        fields.push(f);
        layouts.push(Layout {
            enc,
            nullable: optional,
        });
    }
    let value_record = json!({"type": "record", "name": "Value", "namespace": ns, "fields": fields,
                              "connect.name": format!("{ns}.Value")});
    let block = json!({"type": "record", "name": "block", "namespace": "event", "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"}
    ], "connect.version": 1, "connect.name": "event.block"});
    let value = json!({
        "type": "record", "name": "Envelope", "namespace": ns,
        "fields": [
            {"name": "before", "type": ["null", value_record], "default": null},
            {"name": "after", "type": ["null", format!("{ns}.Value")], "default": null},
            {"name": "source", "type": source_schema()},
            {"name": "transaction", "type": ["null", block], "default": null},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null},
            {"name": "ts_us", "type": ["null", "long"], "default": null},
            {"name": "ts_ns", "type": ["null", "long"], "default": null},
            {"name": "freshet", "type": ["null", change_schema(eav)], "default": null},
        ],
        "connect.version": 2,
        "connect.name": format!("{ns}.Envelope"),
    });

    // FULL identity flags every column: only an explicit key (the primary key read from the
    // catalog) partitions such a table.
    let key_columns: Vec<usize> = match key_columns {
        Some(k) => k.to_vec(),
        None if table.replica_identity == b'f' => Vec::new(),
        None => table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key)
            .map(|(i, _)| i)
            .collect(),
    };
    // Key fields are required, the column's type alone, as Debezium writes them: a key is
    // never NULL and never unchanged (the source takes it from the old row when the new one
    // leaves it out), so key bytes are the same for the same row whatever the change.
    let key = (!key_columns.is_empty()).then(|| {
        let mut defined = HashSet::new();
        let fields: Vec<Json> = key_columns
            .iter()
            .map(|&i| {
                let c = &table.columns[i];
                let (ty, _) = column::column_type(
                    &ColumnKind::of(&c.ty, c.type_modifier),
                    options,
                    &mut defined,
                );
                field(c, ty, false)
            })
            .collect();
        json!({"type": "record", "name": "Key", "namespace": ns, "fields": fields,
               "connect.name": format!("{ns}.Key")})
    });
    TableSchema {
        value,
        key,
        layouts,
        key_columns,
        table: format!("{}.{}", table.schema, table.name),
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
        placeholder: options.placeholder.clone(),
        eav,
    }
}

fn field(c: &Column, ty: Json, optional: bool) -> Json {
    let mut field = if optional {
        json!({"name": avro_name(&c.name), "type": ["null", ty], "default": null})
    } else {
        json!({"name": avro_name(&c.name), "type": ty})
    };
    field["pg_type"] = type_json(&c.ty);
    if c.type_modifier >= 0 {
        // The reader's key to a decimal's scale and a timestamp's unit.
        field["pg_typmod"] = json!(c.type_modifier);
    }
    if avro_name(&c.name) != c.name {
        field["pg_name"] = json!(c.name);
    }
    field
}

pub fn type_json(ty: &TypeInfo) -> Json {
    match &ty.kind {
        TypeKind::Scalar => json!({"oid": ty.oid, "kind": "scalar"}),
        TypeKind::Enum(_) => json!({"oid": ty.oid, "kind": "enum"}),
        TypeKind::Other => json!({"oid": ty.oid, "kind": "other"}),
        TypeKind::Array(e) => json!({"oid": ty.oid, "kind": "array", "elem": type_json(e)}),
    }
}

pub fn type_from_json(j: &Json) -> Option<TypeInfo> {
    let oid = u32::try_from(j.get("oid")?.as_u64()?).ok()?;
    let kind = match j.get("kind")?.as_str()? {
        "scalar" => TypeKind::Scalar,
        "enum" => TypeKind::Enum(Default::default()),
        "other" => TypeKind::Other,
        "array" => TypeKind::Array(Box::new(type_from_json(j.get("elem")?)?)),
        _ => return None,
    };
    Some(TypeInfo { oid, kind })
}

impl TableSchema {
    /// Writes the envelope of one change.
    pub fn encode_value(
        &self,
        meta: &Meta<'_>,
        before: Option<&Row>,
        after: Option<&Row>,
        attribute: Option<Attribute<'_>>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let mut images = [Image::default(), Image::default()];
        for (row, image) in [before, after].into_iter().zip(&mut images) {
            match row {
                None => put_long(out, 0),
                Some(row) => {
                    put_long(out, 1);
                    self.encode_row(row, image, out)?;
                }
            }
        }
        let some_long = |out: &mut Vec<u8>, v: i64| {
            put_long(out, 1);
            put_long(out, v);
        };
        // source
        let o = meta.origin;
        put_str(out, env!("CARGO_PKG_VERSION"));
        put_str(out, "postgresql");
        put_str(out, &o.name);
        put_long(out, meta.commit_ts_us.div_euclid(1000));
        put_long(out, 0);
        put_str(
            out,
            match meta.snapshot {
                Snapshot::False => "false",
                Snapshot::Incremental => "incremental",
            },
        );
        put_str(out, &o.db);
        put_long(out, 1);
        put_str(out, meta.sequence);
        some_long(out, meta.commit_ts_us);
        some_long(out, meta.commit_ts_us.saturating_mul(1000));
        put_str(out, meta.schema);
        put_str(out, meta.table);
        some_long(out, i64::from(meta.xid));
        some_long(out, meta.lsn as i64);
        put_long(out, 0);
        // transaction
        match &meta.transaction {
            None => put_long(out, 0),
            Some(b) => {
                put_long(out, 1);
                put_str(out, b.id);
                put_long(out, b.total_order);
                put_long(out, b.data_collection_order);
            }
        }
        let mut op = [0u8; 4];
        put_str(out, meta.op.encode_utf8(&mut op));
        some_long(out, meta.now_ns.div_euclid(1_000_000));
        some_long(out, meta.now_ns.div_euclid(1000));
        some_long(out, meta.now_ns);
        // freshet
        put_long(out, 1);
        put_long(out, meta.commit_lsn as i64);
        put_long(out, i64::from(meta.seq));
        for image in &images {
            if !image.unchanged.is_empty() {
                put_long(out, image.unchanged.len() as i64);
                for &i in &image.unchanged {
                    put_str(out, &self.columns[i]);
                }
            }
            put_long(out, 0);
            if !image.exact.is_empty() {
                put_long(out, image.exact.len() as i64);
                for (i, text) in &image.exact {
                    put_str(out, &self.columns[*i]);
                    match text {
                        None => put_long(out, 0),
                        Some(text) => {
                            put_long(out, 1);
                            put_str(out, text);
                        }
                    }
                }
            }
            put_long(out, 0);
        }
        if self.eav {
            match attribute {
                None => put_long(out, 0),
                Some(a) => {
                    put_long(out, 1);
                    put_long(out, a.id);
                    put_str(out, a.name);
                    put_str(out, a.data_type);
                }
            }
        }
        Ok(())
    }

    /// Writes the key of `row`: each key column's value alone (no union), in Debezium's form
    /// (a key's exact text travels in the value). A NULL, unchanged, NaN or infinite key value
    /// has no key form and is an error naming the column.
    pub fn encode_key(&self, row: &Row, out: &mut Vec<u8>) -> Result<bool, EncodeError> {
        if self.key_columns.is_empty() {
            return Ok(false);
        }
        for &i in &self.key_columns {
            match row.get(i) {
                Some(Datum::Value(v)) if column::is_non_finite(v) => {
                    return Err(self.error(i, format!("{} has no key form", v.to_pg_text())))
                }
                Some(Datum::Value(v)) => {
                    let _exact = column::put_value(out, &self.layouts[i].enc, v)
                        .map_err(|why| self.error(i, format!("as a key: {why}")))?;
                }
                Some(other) => {
                    return Err(self.error(i, format!("a key column cannot be {other:?}")))
                }
                None => return Err(self.error(i, "the row has no such column".into())),
            }
        }
        Ok(true)
    }

    pub fn has_key(&self) -> bool {
        !self.key_columns.is_empty()
    }

    /// Names of the key's columns.
    pub fn key_column_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.key_columns.iter().map(|&i| self.columns[i].as_str())
    }

    /// Names of the columns written as `["null", T]`.
    pub fn nullable_columns(&self) -> impl Iterator<Item = String> + '_ {
        self.columns
            .iter()
            .zip(&self.layouts)
            .filter(|(_, l)| l.nullable)
            .map(|(c, _)| c.clone())
    }

    /// Names of the NOT NULL columns a new row holds a NULL in: the catalog said NOT NULL
    /// after the row was written (a column made NOT NULL since), and the schema must widen.
    pub fn nulls_in_required(&self, row: &Row) -> Vec<String> {
        row.iter()
            .zip(&self.layouts)
            .zip(&self.columns)
            .filter(|((d, l), _)| matches!(d, Datum::Null) && !l.nullable)
            .map(|(_, name)| name.clone())
            .collect()
    }

    fn encode_row(
        &self,
        row: &Row,
        image: &mut Image,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if row.len() != self.layouts.len() {
            return Err(self.error(
                0,
                format!(
                    "row has {} columns, schema {}",
                    row.len(),
                    self.layouts.len()
                ),
            ));
        }
        for (i, (datum, layout)) in row.iter().zip(&self.layouts).enumerate() {
            match datum {
                Datum::Null if layout.nullable => put_long(out, 0),
                // As Debezium: the type's zero. Freshet's field says it is NULL.
                Datum::Null => {
                    column::put_zero(out, &layout.enc);
                    image.exact.push((i, None));
                }
                Datum::Unchanged => {
                    image.unchanged.push(i);
                    let mark = out.len();
                    if layout.nullable {
                        put_long(out, 1);
                    }
                    if !column::put_placeholder(out, &layout.enc, &self.placeholder) {
                        out.truncate(mark);
                        if layout.nullable {
                            put_long(out, 0);
                        } else {
                            column::put_zero(out, &layout.enc);
                        }
                    }
                }
                Datum::Value(v) => {
                    let mark = out.len();
                    if layout.nullable {
                        put_long(out, 1);
                    }
                    let exact =
                        column::put_value(out, &layout.enc, v).map_err(|why| self.error(i, why))?;
                    if exact == column::Exact::No {
                        if layout.nullable && column::null_in_debezium(&layout.enc, v) {
                            out.truncate(mark);
                            put_long(out, 0);
                        }
                        image.exact.push((i, Some(v.to_pg_text())));
                    }
                }
            }
        }
        Ok(())
    }

    fn error(&self, column: usize, why: String) -> EncodeError {
        EncodeError {
            table: self.table.clone(),
            column: self.columns.get(column).cloned().unwrap_or_default(),
            why,
        }
    }
}

pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

#[cfg(test)]
mod tests;
