//! Avro records back to changes, as JSON lines in the jsonl sink's shape: `freshet tail` and
//! the tests read Kafka through here, so what arrived can be compared with what was written.

use apache_avro::schema::{RecordField, Schema};
use apache_avro::types::Value as Avro;
use serde_json::{json, Map, Value as Json};

use crate::change::{DateValue, TimestampValue, TypeInfo, TypeKind, Value};
use crate::lsn::Lsn;
use crate::source::value::{oid, parse_text};

use super::avro::{decimal_text, type_from_json};

/// A record that does not have the shape Freshet writes.
#[derive(Debug, thiserror::Error)]
#[error("not a Freshet change record: {0}")]
pub struct ShapeError(pub String);

fn shape<T>(what: impl Into<String>) -> Result<T, ShapeError> {
    Err(ShapeError(what.into()))
}

/// The envelope as a JSON object: lsn, seq, xid, op, schema, table, before, after,
/// unchanged, commit_ts_ms, attribute.
pub fn envelope_json(schema: &Schema, value: &Avro) -> Result<Json, ShapeError> {
    let Schema::Record(envelope) = schema else {
        return shape("the schema is not a record");
    };
    let Avro::Record(fields) = value else {
        return shape("the value is not a record");
    };
    let row_fields = envelope
        .fields
        .iter()
        .find(|f| f.name == "before")
        .and_then(|f| match &f.schema {
            Schema::Union(u) => u.variants().iter().find_map(|v| match v {
                Schema::Record(r) => Some(&r.fields),
                _ => None,
            }),
            _ => None,
        });
    let Some(row_fields) = row_fields else {
        return shape("no before/after row record");
    };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let mut unchanged = Vec::new();
    let before = row_json(row_fields, get("before"), &mut unchanged)?;
    let after = row_json(row_fields, get("after"), &mut unchanged)?;
    let Some(Avro::Record(source)) = get("source") else {
        return shape("no source record");
    };
    let src = |name: &str| source.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let long = |v: Option<&Avro>| match v {
        Some(Avro::Long(l)) => Ok(*l),
        other => shape(format!("expected a long, got {other:?}")),
    };
    let string = |v: Option<&Avro>| match v {
        Some(Avro::String(s)) => Ok(s.clone()),
        other => shape(format!("expected a string, got {other:?}")),
    };
    let attribute = match get("attribute") {
        Some(Avro::Union(_, a)) => match a.as_ref() {
            Avro::Record(f) => {
                let field = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| v);
                json!({"id": long(field("id"))?, "name": string(field("name"))?, "data_type": string(field("data_type"))?})
            }
            _ => Json::Null,
        },
        _ => Json::Null,
    };
    Ok(json!({
        "lsn": Lsn(long(src("lsn"))? as u64).to_string(),
        "seq": long(src("sequence"))?,
        "xid": long(src("txId"))?,
        "op": string(get("op"))?,
        "schema": string(src("schema"))?,
        "table": string(src("table"))?,
        "before": before,
        "after": after,
        "unchanged": unchanged,
        "commit_ts_ms": long(src("ts_ms"))?,
        "attribute": attribute,
    }))
}

/// A key record as a JSON object of its columns.
pub fn key_json(schema: &Schema, value: &Avro) -> Result<Json, ShapeError> {
    let Schema::Record(r) = schema else {
        return shape("the key schema is not a record");
    };
    let mut ignored = Vec::new();
    row_json(&r.fields, Some(value), &mut ignored)
}

fn row_json(
    fields: &[RecordField],
    value: Option<&Avro>,
    unchanged: &mut Vec<String>,
) -> Result<Json, ShapeError> {
    let value = match value {
        None | Some(Avro::Null) => return Ok(Json::Null),
        Some(Avro::Union(_, v)) if matches!(v.as_ref(), Avro::Null) => return Ok(Json::Null),
        Some(Avro::Union(_, v)) => v.as_ref(),
        Some(v) => v,
    };
    let Avro::Record(values) = value else {
        return shape("a row is not a record");
    };
    let mut object = Map::with_capacity(values.len());
    for (field, (_, v)) in fields.iter().zip(values) {
        let name = field
            .custom_attributes
            .get("pg_name")
            .and_then(Json::as_str)
            .unwrap_or(&field.name)
            .to_owned();
        let Some(ty) = field
            .custom_attributes
            .get("pg_type")
            .and_then(type_from_json)
        else {
            return shape(format!("field {} has no pg_type", field.name));
        };
        let scale = field
            .custom_attributes
            .get("pg_scale")
            .and_then(Json::as_u64)
            .unwrap_or(0) as u32;
        match datum(&ty, scale, v).map_err(|e| ShapeError(format!("{name}: {e}")))? {
            Decoded::Null => {
                object.insert(name, Json::Null);
            }
            Decoded::Unchanged => unchanged.push(name),
            Decoded::Value(v) => {
                object.insert(name, v.to_json());
            }
        }
    }
    Ok(Json::Object(object))
}

pub enum Decoded {
    Null,
    Unchanged,
    Value(Value),
}

/// One column's Avro value back to the PostgreSQL value it was written from.
pub fn datum(ty: &TypeInfo, scale: u32, v: &Avro) -> Result<Decoded, String> {
    match v {
        Avro::Null => Ok(Decoded::Null),
        Avro::Union(_, inner) => datum(ty, scale, inner),
        Avro::Enum(_, symbol) if symbol == "UNCHANGED" => Ok(Decoded::Unchanged),
        v => value(ty, scale, v).map(Decoded::Value),
    }
}

fn value(ty: &TypeInfo, scale: u32, v: &Avro) -> Result<Value, String> {
    let non_finite = |symbol: &str| -> Result<Value, String> {
        let (pos, neg) = (symbol == "Infinity", symbol == "NegInfinity");
        Ok(match ty.oid {
            oid::NUMERIC => Value::Numeric(
                match symbol {
                    "NaN" => "NaN",
                    "Infinity" => "Infinity",
                    _ => "-Infinity",
                }
                .into(),
            ),
            oid::DATE if pos => Value::Date(DateValue::Infinity),
            oid::DATE if neg => Value::Date(DateValue::NegInfinity),
            oid::TIMESTAMP if pos => Value::Timestamp(TimestampValue::Infinity),
            oid::TIMESTAMP if neg => Value::Timestamp(TimestampValue::NegInfinity),
            oid::TIMESTAMPTZ if pos => Value::TimestampTz(TimestampValue::Infinity),
            oid::TIMESTAMPTZ if neg => Value::TimestampTz(TimestampValue::NegInfinity),
            _ => return Err(format!("{symbol} for type {}", ty.oid)),
        })
    };
    Ok(match (&ty.kind, v) {
        (_, Avro::Union(_, inner)) => return value(ty, scale, inner),
        (_, Avro::Enum(_, symbol)) => return non_finite(symbol),
        (TypeKind::Array(elem), Avro::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| match datum(elem, scale, i)? {
                    Decoded::Value(v) => Ok(Some(v)),
                    _ => Ok(None),
                })
                .collect::<Result<_, String>>()?,
        ),
        (TypeKind::Array(_), Avro::String(text)) => {
            parse_text(ty, text).map_err(|e| e.to_string())?
        }
        (TypeKind::Enum, Avro::String(s)) => Value::Enum(s.clone()),
        (TypeKind::Other, Avro::String(s)) => Value::Other {
            type_oid: ty.oid,
            text: s.clone(),
        },
        (_, Avro::Boolean(b)) => Value::Bool(*b),
        (_, Avro::Int(i)) if ty.oid == oid::INT2 => {
            Value::Int2(i16::try_from(*i).map_err(|e| e.to_string())?)
        }
        (_, Avro::Int(i)) => Value::Int4(*i),
        (_, Avro::Long(l)) => Value::Int8(*l),
        (_, Avro::Float(f)) => Value::Float4(*f),
        (_, Avro::Double(f)) => Value::Float8(*f),
        (_, Avro::Decimal(d)) => {
            let bytes: Vec<u8> = d
                .try_into()
                .map_err(|e: apache_avro::Error| e.to_string())?;
            Value::Numeric(decimal_text(&bytes, scale))
        }
        (_, Avro::Bytes(b)) => Value::Bytea(b.clone()),
        (_, Avro::Date(d)) => Value::Date(DateValue::Days(*d)),
        (_, Avro::TimeMicros(t)) => Value::Time(*t),
        (_, Avro::TimestampMicros(t)) => Value::TimestampTz(TimestampValue::Micros(*t)),
        (_, Avro::LocalTimestampMicros(t)) => Value::Timestamp(TimestampValue::Micros(*t)),
        (_, Avro::Uuid(u)) => Value::Uuid(*u.as_bytes()),
        (_, Avro::String(s)) => parse_text(ty, s).map_err(|e| e.to_string())?,
        (_, other) => return Err(format!("unexpected Avro value {other:?}")),
    })
}
