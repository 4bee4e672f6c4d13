//! Freshet's records read back as typed changes: the one reader `freshet tail`, the tests'
//! oracles and the stages downstream of Kafka decode through. Values come back exact: a
//! column listed unchanged in the `freshet` field is [`Datum::Unchanged`] (never the
//! placeholder its column holds), and a value whose Debezium form is lossy is parsed from the
//! PostgreSQL text the field carries.

use std::collections::HashMap;

use apache_avro::schema::{RecordField, Schema};
use apache_avro::types::Value as Avro;
use serde_json::{json, Map, Value as Json};

use crate::change::{DateValue, Datum, TimestampValue, TypeInfo, TypeKind, Value};
use crate::kind::ColumnKind;
use crate::lsn::Lsn;
use crate::source::value::{oid, parse_text};

use super::avro::{decimal_text, numeric_typmod, type_from_json};

/// A record that does not have the shape Freshet writes.
#[derive(Debug, thiserror::Error)]
#[error("not a Freshet change record: {0}")]
pub struct ShapeError(pub String);

fn shape<T>(what: impl Into<String>) -> Result<T, ShapeError> {
    Err(ShapeError(what.into()))
}

/// One row image: each column's name (PostgreSQL's) and datum, in column order.
pub type Image = Vec<(String, Datum)>;

/// A change record as Freshet wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRecord {
    /// The change identity: its transaction's commit LSN and its place in it.
    pub commit_lsn: Lsn,
    pub seq: u32,
    /// The change's own WAL position.
    pub lsn: Lsn,
    pub xid: i64,
    /// Debezium's op letter.
    pub op: String,
    pub schema: String,
    pub table: String,
    pub commit_ts_ms: i64,
    /// `source.snapshot`.
    pub snapshot: String,
    pub before: Option<Image>,
    pub after: Option<Image>,
    /// The EAV attribute (id, name, data type) of a value change.
    pub attribute: Option<(i64, String, String)>,
}

impl ChangeRecord {
    /// The jsonl output's line shape: lsn (the commit's), seq, xid, op, schema, table, before,
    /// after (unchanged columns left out), unchanged, commit_ts_ms, attribute.
    pub fn to_json(&self) -> Json {
        let mut unchanged = Vec::new();
        let mut image = |row: &Option<Image>| match row {
            None => Json::Null,
            Some(row) => {
                let mut object = Map::with_capacity(row.len());
                for (name, d) in row {
                    match d {
                        Datum::Null => {
                            object.insert(name.clone(), Json::Null);
                        }
                        Datum::Unchanged => unchanged.push(name.clone()),
                        Datum::Value(v) => {
                            object.insert(name.clone(), v.to_json());
                        }
                    }
                }
                Json::Object(object)
            }
        };
        let before = image(&self.before);
        let after = image(&self.after);
        json!({
            "lsn": self.commit_lsn.to_string(),
            "seq": self.seq,
            "xid": self.xid,
            "op": self.op,
            "schema": self.schema,
            "table": self.table,
            "before": before,
            "after": after,
            "unchanged": unchanged,
            "commit_ts_ms": self.commit_ts_ms,
            "attribute": self.attribute.as_ref().map(|(id, name, data_type)| json!({"id": id, "name": name, "data_type": data_type})),
        })
    }
}

fn get<'a>(fields: &'a [(String, Avro)], name: &str) -> Option<&'a Avro> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The value under an optional union's non-null branch, if any.
fn present(v: Option<&Avro>) -> Option<&Avro> {
    match v? {
        Avro::Null => None,
        Avro::Union(_, inner) => present(Some(inner)),
        other => Some(other),
    }
}

fn long(v: Option<&Avro>, what: &str) -> Result<i64, ShapeError> {
    match present(v) {
        Some(Avro::Long(l)) => Ok(*l),
        Some(Avro::Int(i)) => Ok(i64::from(*i)),
        other => shape(format!("{what}: expected a long, got {other:?}")),
    }
}

fn string(v: Option<&Avro>, what: &str) -> Result<String, ShapeError> {
    match present(v) {
        Some(Avro::String(s) | Avro::Enum(_, s)) => Ok(s.clone()),
        other => shape(format!("{what}: expected a string, got {other:?}")),
    }
}

/// Freshet's account of one image: unchanged columns and exact texts.
#[derive(Default)]
struct Exactness {
    unchanged: Vec<String>,
    /// None: NULL.
    exact: HashMap<String, Option<String>>,
}

fn exactness(v: Option<&Avro>) -> Exactness {
    let Some(Avro::Record(fields)) = present(v) else {
        return Exactness::default();
    };
    let unchanged = match get(fields, "unchanged") {
        Some(Avro::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Avro::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let exact = match get(fields, "exact") {
        Some(Avro::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| match present(Some(v)) {
                Some(Avro::String(s)) => Some((k.clone(), Some(s.clone()))),
                None => Some((k.clone(), None)),
                Some(_) => None,
            })
            .collect(),
        _ => HashMap::new(),
    };
    Exactness { unchanged, exact }
}

/// Reads one envelope written by Freshet.
pub fn read_change(schema: &Schema, value: &Avro) -> Result<ChangeRecord, ShapeError> {
    read_shaped(&RowShape::of(schema)?, value)
}

/// The PostgreSQL columns of an envelope schema's row record, worked out once per schema
/// for readers that decode many records of it.
#[derive(Debug)]
pub struct RowShape {
    columns: Vec<(String, TypeInfo, i32)>,
    /// The columns that identify a row (`pg_key`), in key order; empty for a multiset.
    key: Vec<String>,
}

impl RowShape {
    pub fn of(schema: &Schema) -> Result<RowShape, ShapeError> {
        let Some(fields) = row_fields(schema) else {
            return shape("no before/after row record");
        };
        let mut key: Vec<(i64, String)> = fields
            .iter()
            .filter_map(|f| {
                let n = f.custom_attributes.get("pg_key")?.as_i64()?;
                let name = f.custom_attributes.get("pg_name").and_then(Json::as_str);
                Some((n, name.unwrap_or(&f.name).to_owned()))
            })
            .collect();
        key.sort();
        Ok(RowShape {
            columns: columns_of(fields)?,
            key: key.into_iter().map(|(_, name)| name).collect(),
        })
    }

    /// The columns that identify a row, in key order: the primary key, else the replica
    /// identity's index; empty for a table with neither.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// Each column's PostgreSQL type and modifier, in column order.
    pub fn types(&self) -> impl Iterator<Item = (&str, &TypeInfo, i32)> {
        self.columns.iter().map(|(n, t, m)| (n.as_str(), t, *m))
    }

    /// The table's columns in column order, with their kinds.
    pub fn kinds(&self) -> Vec<(String, ColumnKind)> {
        self.columns
            .iter()
            .map(|(name, ty, typmod)| (name.clone(), ColumnKind::of(ty, *typmod)))
            .collect()
    }
}

fn columns_of(fields: &[RecordField]) -> Result<Vec<(String, TypeInfo, i32)>, ShapeError> {
    fields.iter().map(field_column).collect()
}

/// Reads one envelope of the schema `shape` was made from.
pub fn read_shaped(row: &RowShape, value: &Avro) -> Result<ChangeRecord, ShapeError> {
    let Avro::Record(fields) = value else {
        return shape("the value is not a record");
    };
    let row_fields = &row.columns;
    let Some(Avro::Record(source)) = get(fields, "source") else {
        return shape("no source record");
    };
    let Some(Avro::Record(freshet)) = present(get(fields, "freshet")) else {
        return shape("no freshet field: the record was not written by Freshet");
    };
    let attribute = match present(get(freshet, "attribute")) {
        Some(Avro::Record(a)) => Some((
            long(get(a, "id"), "attribute.id")?,
            string(get(a, "name"), "attribute.name")?,
            string(get(a, "data_type"), "attribute.data_type")?,
        )),
        _ => None,
    };
    Ok(ChangeRecord {
        commit_lsn: Lsn(long(get(freshet, "lsn"), "freshet.lsn")? as u64),
        seq: u32::try_from(long(get(freshet, "sequence"), "freshet.sequence")?)
            .map_err(|e| ShapeError(format!("freshet.sequence: {e}")))?,
        lsn: Lsn(long(get(source, "lsn"), "source.lsn")? as u64),
        xid: long(get(source, "txId"), "source.txId")?,
        op: string(get(fields, "op"), "op")?,
        schema: string(get(source, "schema"), "source.schema")?,
        table: string(get(source, "table"), "source.table")?,
        commit_ts_ms: long(get(source, "ts_ms"), "source.ts_ms")?,
        snapshot: string(get(source, "snapshot"), "source.snapshot")?,
        before: image(
            row_fields,
            get(fields, "before"),
            &exactness(get(freshet, "before")),
        )?,
        after: image(
            row_fields,
            get(fields, "after"),
            &exactness(get(freshet, "after")),
        )?,
        attribute,
    })
}

/// A key record as a JSON object of its columns.
pub fn key_json(schema: &Schema, value: &Avro) -> Result<Json, ShapeError> {
    let Schema::Record(r) = schema else {
        return shape("the key schema is not a record");
    };
    let row = image(&columns_of(&r.fields)?, Some(value), &Exactness::default())?;
    Ok(Json::Object(
        row.into_iter()
            .flatten()
            .map(|(name, d)| {
                let v = match d {
                    Datum::Value(v) => v.to_json(),
                    _ => Json::Null,
                };
                (name, v)
            })
            .collect(),
    ))
}

/// One row field's PostgreSQL column: its name, type and type modifier (-1: none).
fn field_column(field: &RecordField) -> Result<(String, TypeInfo, i32), ShapeError> {
    let attr = |name: &str| field.custom_attributes.get(name);
    let name = attr("pg_name")
        .and_then(Json::as_str)
        .unwrap_or(&field.name)
        .to_owned();
    let Some(ty) = attr("pg_type").and_then(type_from_json) else {
        return shape(format!("field {} has no pg_type", field.name));
    };
    let typmod = attr("pg_typmod")
        .and_then(Json::as_i64)
        .and_then(|t| i32::try_from(t).ok())
        .unwrap_or(-1);
    Ok((name, ty, typmod))
}

fn row_fields(schema: &Schema) -> Option<&[RecordField]> {
    let Schema::Record(envelope) = schema else {
        return None;
    };
    envelope
        .fields
        .iter()
        .find(|f| f.name == "before")
        .and_then(|f| match &f.schema {
            Schema::Union(u) => u.variants().iter().find_map(|v| match v {
                Schema::Record(r) => Some(r.fields.as_slice()),
                _ => None,
            }),
            _ => None,
        })
}

fn image(
    columns: &[(String, TypeInfo, i32)],
    value: Option<&Avro>,
    exactness: &Exactness,
) -> Result<Option<Image>, ShapeError> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    let Avro::Record(values) = value else {
        return shape("a row is not a record");
    };
    let mut row = Vec::with_capacity(values.len());
    for ((name, ty, typmod), (_, v)) in columns.iter().zip(values) {
        let datum = if exactness.unchanged.contains(name) {
            Datum::Unchanged
        } else if let Some(text) = exactness.exact.get(name) {
            match text {
                None => Datum::Null,
                Some(text) => Datum::Value(
                    parse_text(ty, text).map_err(|e| ShapeError(format!("{name}: {e}")))?,
                ),
            }
        } else {
            match present(Some(v)) {
                None => Datum::Null,
                Some(v) => Datum::Value(
                    column(ty, *typmod, v).map_err(|e| ShapeError(format!("{name}: {e}")))?,
                ),
            }
        };
        row.push((name.clone(), datum));
    }
    Ok(Some(row))
}

/// Milliseconds as microseconds, refusing what does not fit.
fn millis(ms: i64) -> Result<i64, String> {
    ms.checked_mul(1000)
        .ok_or_else(|| format!("{ms} ms is out of range"))
}

/// One column's Avro value in Debezium's form back to the PostgreSQL value it was written
/// from (values whose form is lossy come from the exact text instead).
fn column(ty: &TypeInfo, typmod: i32, v: &Avro) -> Result<Value, String> {
    let text = |s: &str| parse_text(ty, s).map_err(|e| e.to_string());
    Ok(match (&ty.kind, v) {
        (_, Avro::Union(_, inner)) => return column(ty, typmod, inner),
        (TypeKind::Array(elem), Avro::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| match present(Some(i)) {
                    None => Ok(None),
                    Some(i) => column(elem, -1, i).map(Some),
                })
                .collect::<Result<_, String>>()?,
        ),
        (_, Avro::Boolean(b)) if ty.oid == oid::BOOL => Value::Bool(*b),
        (_, Avro::Boolean(b)) => text(if *b { "1" } else { "0" })?,
        (_, Avro::Int(i)) => match ty.oid {
            oid::INT2 => Value::Int2(i16::try_from(*i).map_err(|e| e.to_string())?),
            oid::DATE => Value::Date(DateValue::Days(*i)),
            oid::TIME => Value::Time(i64::from(*i) * 1000),
            _ => Value::Int4(*i),
        },
        (_, Avro::Date(d)) => Value::Date(DateValue::Days(*d)),
        (_, Avro::TimeMillis(t)) => Value::Time(i64::from(*t) * 1000),
        (_, Avro::TimestampMillis(t)) => Value::Timestamp(TimestampValue::Micros(millis(*t)?)),
        (_, Avro::Long(l)) => match ty.oid {
            oid::TIME => Value::Time(*l),
            oid::TIMESTAMP if (0..=3).contains(&typmod) => {
                Value::Timestamp(TimestampValue::Micros(millis(*l)?))
            }
            oid::TIMESTAMP => Value::Timestamp(TimestampValue::Micros(*l)),
            _ => Value::Int8(*l),
        },
        (_, Avro::Float(f)) => Value::Float4(*f),
        (_, Avro::Double(f)) if ty.oid == oid::FLOAT8 => Value::Float8(*f),
        (_, Avro::Double(f)) => Value::Numeric(f.to_string()),
        (_, Avro::Decimal(d)) => {
            let bytes: Vec<u8> = d
                .try_into()
                .map_err(|e: apache_avro::Error| e.to_string())?;
            let scale = numeric_typmod(typmod).map_or(2, |(_, s)| s);
            Value::Numeric(decimal_text(&bytes, scale))
        }
        (_, Avro::Record(fields)) => {
            // io.debezium.data.VariableScaleDecimal
            // PostgreSQL's largest display scale bounds what a writer may claim.
            let scale = match get(fields, "scale") {
                Some(Avro::Int(s)) if (0..=16383).contains(s) => *s as u32,
                other => return Err(format!("a VariableScaleDecimal's scale: {other:?}")),
            };
            let Some(Avro::Bytes(b)) = get(fields, "value") else {
                return Err("a VariableScaleDecimal without its value".into());
            };
            Value::Numeric(decimal_text(b, scale))
        }
        (_, Avro::Bytes(b)) => Value::Bytea(b.clone()),
        (_, Avro::String(s)) if ty.oid == oid::TIMESTAMPTZ => {
            let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("{s:?}: {e}"))?;
            Value::TimestampTz(TimestampValue::Micros(t.timestamp_micros()))
        }
        (TypeKind::Enum(_), Avro::String(s)) => Value::Enum(s.clone()),
        (_, Avro::String(s)) => text(s)?,
        (_, other) => return Err(format!("unexpected Avro value {other:?}")),
    })
}
