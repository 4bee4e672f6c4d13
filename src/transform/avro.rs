//! Avro schemas derived from a table's Relation, and the binary encoding of its changes.
//!
//! Type mapping (every column is a union whose first branch is `null`, default null, so an
//! added column is a BACKWARD-compatible change):
//!
//! | PostgreSQL | Avro |
//! |---|---|
//! | bool | boolean |
//! | int2, int4 | int |
//! | int8, oid | long |
//! | float4 / float8 | float / double (NaN and ±Infinity are IEEE values) |
//! | numeric(p,s) | bytes, logicalType decimal(p,s); NaN/±Infinity in a `freshet.NonFinite` branch |
//! | numeric (unconstrained) | string, the exact decimal text |
//! | text, varchar, bpchar, name, char | string |
//! | bytea | bytes |
//! | date | int, logicalType date; ±infinity in `freshet.NonFinite` |
//! | time | long, logicalType time-micros |
//! | timestamp / timestamptz | long, local-timestamp-micros / timestamp-micros; ±infinity in `freshet.NonFinite` |
//! | uuid | string, logicalType uuid |
//! | json, jsonb, enums, other types | string (PostgreSQL's text form) |
//! | one-dimensional arrays | array of [null, element]; a multi-dimensional value goes in a string branch as PostgreSQL's array text |
//!
//! A TOASTed value that an update did not touch is the `freshet.Unchanged` branch of its
//! column, present on every type PostgreSQL can TOAST: never NULL, never a placeholder.
//! Each field carries `pg_type` (oid, kind, element) so a reader can restore the exact value.
//!
//! The hot path writes Avro's binary encoding directly from the change (it is a small,
//! fixed format); `apache-avro` parses every schema Freshet builds, fingerprints it, checks
//! compatibility and decodes, and the tests decode what this encoder writes with it.

use std::collections::HashSet;

use serde_json::{json, Value as Json};

use crate::change::{
    Column, DateValue, Datum, Row, Table, TimestampValue, TypeInfo, TypeKind, Value,
};
use crate::source::value::oid;

/// Where an encoded value goes wrong: names the table and column.
#[derive(Debug, thiserror::Error)]
#[error("{table}.{column}: {why}")]
pub struct EncodeError {
    pub table: String,
    pub column: String,
    pub why: String,
}

/// How one column is written.
#[derive(Clone, Debug, PartialEq)]
enum Enc {
    Bool,
    Int,
    Long,
    Float,
    Double,
    Decimal { scale: u32 },
    String,
    Bytes,
    Date,
    TimeMicros,
    TimestampMicros,
    Array(Box<Layout>),
}

/// A column's union: `null` at 0, the main type at 1, then the optional branches.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    enc: Enc,
    non_finite: Option<i64>,
    /// Multi-dimensional array text.
    text: Option<i64>,
    unchanged: Option<i64>,
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
}

/// What the envelope says about where a change came from.
pub struct Meta<'a> {
    pub pipeline: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    pub op: char,
    pub commit_lsn: u64,
    pub seq: u32,
    pub xid: u32,
    pub commit_ts_ms: i64,
    pub now_ms: i64,
}

/// The EAV enrichment of a value change.
pub struct Attribute<'a> {
    pub id: i64,
    pub name: &'a str,
    pub data_type: &'a str,
}

const NON_FINITE: &str = "freshet.NonFinite";
const UNCHANGED: &str = "freshet.Unchanged";
const NON_FINITE_SYMBOLS: &[&str] = &["NaN", "Infinity", "NegInfinity"];

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

pub fn namespace(table: &Table) -> String {
    format!(
        "freshet.{}.{}",
        avro_name(&table.schema),
        avro_name(&table.name)
    )
}

/// Builds the schemas of `table`; `key_columns` overrides the replica identity as the key
/// (the primary key, or for the EAV value table a prefix of it); `eav` adds the attribute
/// field.
pub fn table_schema(table: &Table, key_columns: Option<&[usize]>, eav: bool) -> TableSchema {
    let ns = namespace(table);
    let mut defined = HashSet::new();
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut layouts = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        let (field, layout) = column_field(c, &mut defined);
        fields.push(field);
        layouts.push(layout);
    }
    let value_record =
        json!({"type": "record", "name": "Value", "namespace": ns, "fields": fields});
    let mut envelope_fields = vec![
        json!({"name": "before", "type": ["null", value_record], "default": null}),
        json!({"name": "after", "type": ["null", format!("{ns}.Value")], "default": null}),
        json!({"name": "op", "type": "string", "doc": "c insert, u update, d delete, r snapshot read, t truncate"}),
        json!({"name": "ts_ms", "type": "long", "doc": "when Freshet processed the change"}),
        json!({"name": "source", "type": {"type": "record", "name": "Source", "namespace": "freshet", "fields": [
            {"name": "version", "type": "string"},
            {"name": "connector", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "ts_ms", "type": "long", "doc": "commit time"},
            {"name": "schema", "type": "string"},
            {"name": "table", "type": "string"},
            {"name": "txId", "type": "long"},
            {"name": "lsn", "type": "long", "doc": "commit LSN"},
            {"name": "sequence", "type": "long", "doc": "position of the change in its transaction"}
        ]}}),
    ];
    if eav {
        envelope_fields.push(
            json!({"name": "attribute", "default": null, "type": ["null", {
            "type": "record", "name": "Attribute", "namespace": "freshet", "fields": [
                {"name": "id", "type": "long"},
                {"name": "name", "type": "string"},
                {"name": "data_type", "type": "string"}
            ]}]}),
        );
    }
    let value = json!({
        "type": "record", "name": "Envelope", "namespace": ns,
        "doc": format!("Changes of {}.{} (Debezium envelope)", table.schema, table.name),
        "fields": envelope_fields,
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
    let keyed = !key_columns.is_empty();
    // Key fields are required, the column's type alone, as Debezium writes them: a key is
    // never NULL and never unchanged (the source takes it from the old row when the new one
    // leaves it out), so key bytes are the same for the same row whatever the change.
    let key = keyed.then(|| {
        let mut defined = HashSet::new();
        let fields: Vec<Json> = key_columns
            .iter()
            .map(|&i| key_field(&table.columns[i], &mut defined))
            .collect();
        json!({"type": "record", "name": "Key", "namespace": ns, "fields": fields})
    });
    TableSchema {
        value,
        key,
        layouts,
        key_columns: if keyed { key_columns } else { Vec::new() },
        table: format!("{}.{}", table.schema, table.name),
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
    }
}

fn column_field(c: &Column, defined: &mut HashSet<&'static str>) -> (Json, Layout) {
    let (main, enc, non_finite, toastable) = main_type(&c.ty, c.type_modifier, defined);
    let mut branches = vec![json!("null"), main];
    let mut layout = Layout {
        enc,
        non_finite: None,
        text: None,
        unchanged: None,
    };
    if non_finite {
        layout.non_finite = Some(branches.len() as i64);
        branches.push(named_enum(defined, NON_FINITE, NON_FINITE_SYMBOLS));
    }
    if matches!(c.ty.kind, TypeKind::Array(_)) {
        layout.text = Some(branches.len() as i64);
        branches.push(json!("string"));
    }
    if toastable {
        layout.unchanged = Some(branches.len() as i64);
        branches.push(named_enum(defined, UNCHANGED, &["UNCHANGED"]));
    }
    let mut field = json!({
        "name": avro_name(&c.name),
        "type": branches,
        "default": null,
        "pg_type": type_json(&c.ty),
    });
    if let Some((_, scale)) = (c.ty.oid == oid::NUMERIC)
        .then(|| numeric_typmod(c.type_modifier))
        .flatten()
    {
        field["pg_scale"] = json!(scale);
    }
    if avro_name(&c.name) != c.name {
        field["pg_name"] = json!(c.name);
    }
    (field, layout)
}

fn key_field(c: &Column, defined: &mut HashSet<&'static str>) -> Json {
    let (main, ..) = main_type(&c.ty, c.type_modifier, defined);
    let mut field = json!({"name": avro_name(&c.name), "type": main, "pg_type": type_json(&c.ty)});
    if avro_name(&c.name) != c.name {
        field["pg_name"] = json!(c.name);
    }
    field
}

fn named_enum(defined: &mut HashSet<&'static str>, name: &'static str, symbols: &[&str]) -> Json {
    if defined.insert(name) {
        json!({"type": "enum", "name": name, "symbols": symbols})
    } else {
        json!(name)
    }
}

/// The main branch: (schema, encoding, has a NonFinite branch, can be TOASTed).
fn main_type(
    ty: &TypeInfo,
    typmod: i32,
    defined: &mut HashSet<&'static str>,
) -> (Json, Enc, bool, bool) {
    match &ty.kind {
        TypeKind::Enum => (json!("string"), Enc::String, false, false),
        TypeKind::Other => (json!("string"), Enc::String, false, true),
        TypeKind::Array(elem) => {
            let (main, enc, non_finite, _) = main_type(elem, -1, defined);
            let mut items = vec![json!("null"), main];
            let mut layout = Layout {
                enc,
                non_finite: None,
                text: None,
                unchanged: None,
            };
            if non_finite {
                layout.non_finite = Some(2);
                items.push(named_enum(defined, NON_FINITE, NON_FINITE_SYMBOLS));
            }
            (
                json!({"type": "array", "items": items}),
                Enc::Array(Box::new(layout)),
                false,
                true,
            )
        }
        TypeKind::Scalar => match ty.oid {
            oid::BOOL => (json!("boolean"), Enc::Bool, false, false),
            oid::INT2 | oid::INT4 => (json!("int"), Enc::Int, false, false),
            oid::INT8 | oid::OID => (json!("long"), Enc::Long, false, false),
            oid::FLOAT4 => (json!("float"), Enc::Float, false, false),
            oid::FLOAT8 => (json!("double"), Enc::Double, false, false),
            oid::NUMERIC => match numeric_typmod(typmod) {
                Some((precision, scale)) => (
                    json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}),
                    Enc::Decimal { scale },
                    true,
                    true,
                ),
                None => (json!("string"), Enc::String, false, true),
            },
            oid::BYTEA => (json!("bytes"), Enc::Bytes, false, true),
            oid::DATE => (
                json!({"type": "int", "logicalType": "date"}),
                Enc::Date,
                true,
                false,
            ),
            oid::TIME => (
                json!({"type": "long", "logicalType": "time-micros"}),
                Enc::TimeMicros,
                false,
                false,
            ),
            oid::TIMESTAMP => (
                json!({"type": "long", "logicalType": "local-timestamp-micros"}),
                Enc::TimestampMicros,
                true,
                false,
            ),
            oid::TIMESTAMPTZ => (
                json!({"type": "long", "logicalType": "timestamp-micros"}),
                Enc::TimestampMicros,
                true,
                false,
            ),
            oid::UUID => (
                json!({"type": "string", "logicalType": "uuid"}),
                Enc::String,
                false,
                false,
            ),
            oid::NAME | oid::CHAR => (json!("string"), Enc::String, false, false),
            _ => (json!("string"), Enc::String, false, true),
        },
    }
}

/// numeric(p,s) as PostgreSQL packs it; a negative or oversized scale has no Avro decimal.
pub fn numeric_typmod(typmod: i32) -> Option<(u32, u32)> {
    if typmod < 4 {
        return None;
    }
    let t = (typmod - 4) as u32;
    let (precision, scale) = (t >> 16 & 0xffff, t & 0x7ff);
    (t & 0xffff <= 0x3ff && scale <= precision && precision > 0).then_some((precision, scale))
}

pub fn type_json(ty: &TypeInfo) -> Json {
    match &ty.kind {
        TypeKind::Scalar => json!({"oid": ty.oid, "kind": "scalar"}),
        TypeKind::Enum => json!({"oid": ty.oid, "kind": "enum"}),
        TypeKind::Other => json!({"oid": ty.oid, "kind": "other"}),
        TypeKind::Array(e) => json!({"oid": ty.oid, "kind": "array", "elem": type_json(e)}),
    }
}

pub fn type_from_json(j: &Json) -> Option<TypeInfo> {
    let oid = u32::try_from(j.get("oid")?.as_u64()?).ok()?;
    let kind = match j.get("kind")?.as_str()? {
        "scalar" => TypeKind::Scalar,
        "enum" => TypeKind::Enum,
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
        attribute: Option<Option<Attribute<'_>>>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        for row in [before, after] {
            match row {
                None => put_long(out, 0),
                Some(row) => {
                    put_long(out, 1);
                    self.encode_row(row, out)?;
                }
            }
        }
        let mut op = [0u8; 4];
        put_str(out, meta.op.encode_utf8(&mut op));
        put_long(out, meta.now_ms);
        put_str(out, env!("CARGO_PKG_VERSION"));
        put_str(out, "freshet");
        put_str(out, meta.pipeline);
        put_long(out, meta.commit_ts_ms);
        put_str(out, meta.schema);
        put_str(out, meta.table);
        put_long(out, i64::from(meta.xid));
        put_long(out, meta.commit_lsn as i64);
        put_long(out, i64::from(meta.seq));
        if let Some(attribute) = attribute {
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

    /// Writes the key of a row; `None` when the table has no key.
    /// Writes the key of `row`: each key column's value alone (no union). A NULL, unchanged
    /// or non-finite key value has no key form and is an error naming the column.
    pub fn encode_key(&self, row: &Row, out: &mut Vec<u8>) -> Result<bool, EncodeError> {
        if self.key_columns.is_empty() {
            return Ok(false);
        }
        for &i in &self.key_columns {
            match row.get(i) {
                Some(Datum::Value(v)) => put_main(out, &self.layouts[i].enc, v)
                    .map_err(|why| self.error(i, format!("as a key: {why}")))?,
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

    fn encode_row(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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
        let write = |i: usize| -> Result<(), EncodeError> {
            let layout = &self.layouts[i];
            match &row[i] {
                Datum::Null => put_long(out, 0),
                Datum::Unchanged => match layout.unchanged {
                    Some(branch) => {
                        put_long(out, branch);
                        put_long(out, 0);
                    }
                    None => {
                        return Err(self.error(
                            i,
                            "TOAST-unchanged value on a type that cannot be TOASTed".into(),
                        ))
                    }
                },
                Datum::Value(v) => {
                    put_union_value(out, layout, v).map_err(|why| self.error(i, why))?
                }
            }
            Ok(())
        };
        (0..row.len()).try_for_each(write)
    }

    fn error(&self, column: usize, why: String) -> EncodeError {
        EncodeError {
            table: self.table.clone(),
            column: self.columns.get(column).cloned().unwrap_or_default(),
            why,
        }
    }
}

fn put_union_value(out: &mut Vec<u8>, layout: &Layout, v: &Value) -> Result<(), String> {
    let non_finite = |out: &mut Vec<u8>, symbol: i64| match layout.non_finite {
        Some(branch) => {
            put_long(out, branch);
            put_long(out, symbol);
            Ok(())
        }
        None => Err(format!("{v:?} has no Avro branch")),
    };
    match (v, &layout.enc) {
        (Value::Numeric(text), Enc::Decimal { .. })
            if matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") =>
        {
            non_finite(
                out,
                match text.as_str() {
                    "NaN" => 0,
                    "Infinity" => 1,
                    _ => 2,
                },
            )
        }
        (Value::Date(DateValue::Infinity), _)
        | (
            Value::Timestamp(TimestampValue::Infinity)
            | Value::TimestampTz(TimestampValue::Infinity),
            _,
        ) => non_finite(out, 1),
        (Value::Date(DateValue::NegInfinity), _)
        | (
            Value::Timestamp(TimestampValue::NegInfinity)
            | Value::TimestampTz(TimestampValue::NegInfinity),
            _,
        ) => non_finite(out, 2),
        (Value::Array(items), Enc::Array(_))
            if items.iter().any(|i| matches!(i, Some(Value::Array(_)))) =>
        {
            match layout.text {
                Some(branch) => {
                    put_long(out, branch);
                    put_str(out, &v.to_pg_text());
                    Ok(())
                }
                None => Err("multi-dimensional array without a text branch".into()),
            }
        }
        _ => {
            put_long(out, 1);
            put_main(out, &layout.enc, v)
        }
    }
}

fn put_main(out: &mut Vec<u8>, enc: &Enc, v: &Value) -> Result<(), String> {
    match (enc, v) {
        (Enc::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (Enc::Int, Value::Int2(i)) => put_long(out, i64::from(*i)),
        (Enc::Int, Value::Int4(i)) => put_long(out, i64::from(*i)),
        (Enc::Long, Value::Int8(i)) => put_long(out, *i),
        (Enc::Float, Value::Float4(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Enc::Double, Value::Float8(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Enc::Decimal { scale }, Value::Numeric(text)) => {
            put_bytes(out, &decimal_bytes(text, *scale)?)
        }
        (Enc::Bytes, Value::Bytea(b)) => put_bytes(out, b),
        (Enc::Date, Value::Date(DateValue::Days(d))) => put_long(out, i64::from(*d)),
        (Enc::TimeMicros, Value::Time(t)) => put_long(out, *t),
        (
            Enc::TimestampMicros,
            Value::Timestamp(TimestampValue::Micros(t))
            | Value::TimestampTz(TimestampValue::Micros(t)),
        ) => put_long(out, *t),
        (
            Enc::String,
            Value::Text(s) | Value::Json(s) | Value::Jsonb(s) | Value::Enum(s) | Value::Numeric(s),
        ) => put_str(out, s),
        (Enc::String, Value::Other { text, .. }) => put_str(out, text),
        (Enc::String, other) => put_str(out, &other.to_pg_text()),
        (Enc::Array(item), Value::Array(items)) => {
            if !items.is_empty() {
                put_long(out, items.len() as i64);
                for i in items {
                    match i {
                        None => put_long(out, 0),
                        Some(v) => put_union_value(out, item, v)?,
                    }
                }
            }
            put_long(out, 0);
        }
        (enc, v) => {
            return Err(format!(
                "value {v:?} does not fit the column's Avro type {enc:?}"
            ))
        }
    }
    Ok(())
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

/// A decimal's text as the two's-complement big-endian unscaled integer Avro wants.
fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > scale as usize {
        return Err(format!("{text} has more than {scale} fraction digits"));
    }
    // Magnitude in base 256, little-endian, built digit by digit.
    let mut mag: Vec<u8> = Vec::new();
    let padding = scale as usize - frac.len();
    for d in int
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', padding))
    {
        if !d.is_ascii_digit() {
            return Err(format!("{text:?} is not a decimal"));
        }
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut() {
            let x = u32::from(*byte) * 10 + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
        if carry > 0 {
            mag.push(carry as u8);
        }
    }
    if negative {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let x = u16::from(!*byte) + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
    }
    mag.reverse();
    // One sign byte when the top bit disagrees with the sign.
    let sign = if negative { 0xff } else { 0 };
    if mag.first().is_none_or(|b| (b & 0x80 != 0) != negative) {
        mag.insert(0, sign);
    }
    // Drop redundant sign bytes.
    while mag.len() > 1 && mag[0] == sign && (mag[1] & 0x80 != 0) == negative {
        mag.remove(0);
    }
    Ok(mag)
}

/// The inverse of [`decimal_bytes`]: unscaled two's-complement bytes to decimal text.
pub fn decimal_text(bytes: &[u8], scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut mag: Vec<u8> = bytes.to_vec();
    if negative {
        // Negate: invert, add one.
        let mut carry = 1u16;
        for byte in mag.iter_mut().rev() {
            let x = u16::from(!*byte) + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
    }
    let mut digits = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for byte in mag.iter_mut() {
            let x = (rem << 8) | u32::from(*byte);
            *byte = (x / 10) as u8;
            rem = x % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    while digits.len() <= scale as usize {
        digits.push(b'0');
    }
    digits.reverse();
    let split = digits.len() - scale as usize;
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(&digits[..split]).unwrap_or("0"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(&digits[split..]).unwrap_or("0"));
    }
    text
}

#[cfg(test)]
mod tests;
