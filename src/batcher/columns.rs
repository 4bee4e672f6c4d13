//! Change records as Arrow record batches: the table's columns typed by their
//! [`ColumnKind`], then Freshet's `_freshet_` metadata columns.
//!
//! A value the typed column cannot hold (a numeric NaN, an infinite date, a numeric wider
//! than 38 digits, a multi-dimensional array) is NULL there and appears, as PostgreSQL's
//! text, in `_freshet_exact` (a JSON object of column → text), as in the records' own
//! `freshet` field. A TOASTed column the update left untouched is NULL and listed in
//! `_freshet_unchanged` (a JSON array of names): the loader keeps the value it had.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, BooleanArray, ListArray, RecordBatch};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::change::{DateValue, Datum, TimestampValue, Value};
use crate::kind::ColumnKind;
use crate::transform::avro::column::money_digits;
use crate::transform::avro::{type_from_json, type_json};
use crate::transform::decode::{ChangeRecord, RowShape};

/// time's range in Arrow ends before PostgreSQL's 24:00:00.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Arrow's (and Parquet's, and Redshift's) widest decimal.
const MAX_DECIMAL_PRECISION: u32 = 38;

/// The metadata columns, in order.
pub const OP: &str = "_freshet_op";
pub const COMMIT_LSN: &str = "_freshet_commit_lsn";
pub const SEQUENCE: &str = "_freshet_sequence";
pub const COMMIT_TS: &str = "_freshet_commit_ts";
pub const KAFKA_PARTITION: &str = "_freshet_kafka_partition";
pub const KAFKA_OFFSET: &str = "_freshet_kafka_offset";
pub const UNCHANGED: &str = "_freshet_unchanged";
pub const EXACT: &str = "_freshet_exact";
/// An update's old row, when the stream carries it (REPLICA IDENTITY FULL: the only way to
/// find the row of a table without a key), as a JSON object of PostgreSQL texts.
pub const BEFORE: &str = "_freshet_before";
/// The EAV value table's attribute, by name and declared type.
pub const ATTRIBUTE_NAME: &str = "_freshet_attribute_name";
pub const ATTRIBUTE_TYPE: &str = "_freshet_attribute_type";
/// Whether the change is half of a key change (Debezium's `__debezium.oldkey` /
/// `__debezium.newkey` headers): the loader hands the old row's TOASTed values from the
/// delete to the create by it. Last, so that a reader of objects written before it was
/// added sees the same columns in the same places.
pub const KEY_CHANGE: &str = "_freshet_key_change";

/// The Parquet key-value metadata entry in which every object describes its table, so the
/// lake's readers (the loader first) need neither Kafka nor the source to know its columns.
pub const DESCRIPTION_KEY: &str = "freshet.table";

/// A table as one object holds it: its columns' PostgreSQL types, the columns that identify
/// a row (empty for a table without a key: a multiset), and whether it is the EAV value
/// table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Description {
    pub table: String,
    pub columns: Vec<DescribedColumn>,
    pub key: Vec<String>,
    pub eav: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DescribedColumn {
    pub name: String,
    pub pg_type: serde_json::Value,
    pub pg_typmod: i32,
}

impl Description {
    pub fn of(table: &str, shape: &RowShape, eav: bool) -> Description {
        Description {
            table: table.to_owned(),
            columns: shape
                .types()
                .map(|(name, ty, typmod)| DescribedColumn {
                    name: name.to_owned(),
                    pg_type: type_json(ty),
                    pg_typmod: typmod,
                })
                .collect(),
            key: shape.key().to_vec(),
            eav,
        }
    }

    /// The columns with their kinds; `None` names a column whose type is unreadable.
    pub fn kinds(&self) -> Result<Vec<(String, ColumnKind)>, String> {
        self.columns
            .iter()
            .map(|c| match type_from_json(&c.pg_type) {
                Some(ty) => Ok((c.name.clone(), ColumnKind::of(&ty, c.pg_typmod))),
                None => Err(format!(
                    "column {}: unreadable pg_type {}",
                    c.name, c.pg_type
                )),
            })
            .collect()
    }
}

/// One consumed change and where it lay in Kafka.
pub struct Row {
    pub change: ChangeRecord,
    pub partition: i32,
    pub offset: i64,
    pub key_change: bool,
}

/// The Arrow type a column of `kind` lands as.
pub fn arrow_type(kind: &ColumnKind) -> DataType {
    match kind {
        ColumnKind::Bool | ColumnKind::Bit => DataType::Boolean,
        ColumnKind::Int16 => DataType::Int16,
        ColumnKind::Int32 => DataType::Int32,
        ColumnKind::Int64 => DataType::Int64,
        ColumnKind::Float32 => DataType::Float32,
        ColumnKind::Float64 => DataType::Float64,
        ColumnKind::Decimal { precision, scale } if *precision <= MAX_DECIMAL_PRECISION => {
            DataType::Decimal128(*precision as u8, *scale as i8)
        }
        // money's range is ±92233720368547758.07: 19 digits.
        ColumnKind::Money => DataType::Decimal128(19, 2),
        ColumnKind::Bytes => DataType::Binary,
        ColumnKind::Date => DataType::Date32,
        ColumnKind::Time { .. } => DataType::Time64(TimeUnit::Microsecond),
        ColumnKind::Timestamp { .. } => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnKind::TimestampTz { .. } => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ColumnKind::Array(inner) => {
            DataType::List(Arc::new(Field::new_list_field(arrow_type(inner), true)))
        }
        // Exact as text: unconstrained or wider numerics, and types with no Arrow peer that
        // Redshift loads (time with time zone, intervals, bit strings) or whose text is the
        // value (uuid, json, xml, enums, text).
        ColumnKind::Decimal { .. }
        | ColumnKind::Numeric
        | ColumnKind::TimeTz
        | ColumnKind::Interval
        | ColumnKind::Uuid
        | ColumnKind::Json
        | ColumnKind::Xml
        | ColumnKind::Bits { .. }
        | ColumnKind::Enum(_)
        | ColumnKind::Text => DataType::Utf8,
    }
}

/// A table's columns as the lake writes them.
#[derive(Debug)]
pub struct Layout {
    columns: Vec<(String, ColumnKind)>,
    eav: bool,
    schema: SchemaRef,
}

impl Layout {
    /// `columns` in table order; `eav` adds the attribute columns of an EAV value table.
    pub fn new(columns: Vec<(String, ColumnKind)>, eav: bool) -> Layout {
        let mut fields: Vec<Field> = columns
            .iter()
            // Every column is nullable here: a delete carries only the key, a TRUNCATE none.
            .map(|(name, kind)| Field::new(name, arrow_type(kind), true))
            .collect();
        fields.extend([
            Field::new(OP, DataType::Utf8, false),
            Field::new(COMMIT_LSN, DataType::Int64, false),
            Field::new(SEQUENCE, DataType::Int64, false),
            Field::new(
                COMMIT_TS,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new(KAFKA_PARTITION, DataType::Int32, false),
            Field::new(KAFKA_OFFSET, DataType::Int64, false),
            // A JSON array of names, as `_freshet_exact` and `_freshet_before` are JSON: one
            // text that a warehouse's SQL reads the same way everywhere.
            Field::new(UNCHANGED, DataType::Utf8, true),
            Field::new(EXACT, DataType::Utf8, true),
            Field::new(BEFORE, DataType::Utf8, true),
        ]);
        if eav {
            fields.push(Field::new(ATTRIBUTE_NAME, DataType::Utf8, true));
            fields.push(Field::new(ATTRIBUTE_TYPE, DataType::Utf8, true));
        }
        fields.push(Field::new(KEY_CHANGE, DataType::Boolean, false));
        Layout {
            columns,
            eav,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The rows as one record batch.
    pub fn batch(&self, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
        // The row image a change leaves: the new row, or for a delete the old one (its key,
        // or all of it under REPLICA IDENTITY FULL); a TRUNCATE has none.
        let images: Vec<Option<&Vec<(String, Datum)>>> = rows
            .iter()
            .map(|r| r.change.after.as_ref().or(r.change.before.as_ref()))
            .collect();
        let mut exact: Vec<serde_json::Map<String, serde_json::Value>> =
            vec![serde_json::Map::new(); rows.len()];
        let mut unchanged = StringBuilder::new();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let mut values = Vec::with_capacity(rows.len());
            for (row, image) in images.iter().enumerate() {
                // Columns are found by position when the image has the table's shape, by
                // name otherwise (a key-only image).
                let datum = image.and_then(|img| match img.get(i) {
                    Some((n, d)) if n == name => Some(d),
                    _ => img.iter().find(|(n, _)| n == name).map(|(_, d)| d),
                });
                values.push(match datum {
                    Some(Datum::Value(v)) if fits(kind, v) => Some(v),
                    Some(Datum::Value(v)) => {
                        exact[row].insert(name.clone(), v.to_pg_text().into());
                        None
                    }
                    _ => None,
                });
            }
            arrays.push(build(kind, &values)?);
        }
        for image in &images {
            let names: Vec<&str> = image
                .map(|i| i.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(|(_, d)| *d == Datum::Unchanged)
                .map(|(name, _)| name.as_str())
                .collect();
            if names.is_empty() {
                unchanged.append_null();
            } else {
                unchanged.append_value(serde_json::Value::from(names).to_string());
            }
        }
        let strings = |f: &dyn Fn(&Row) -> Option<&str>| {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
            for r in rows {
                b.append_option(f(r));
            }
            Arc::new(b.finish()) as ArrayRef
        };
        let longs = |f: &dyn Fn(&Row) -> i64| {
            let mut b = Int64Builder::with_capacity(rows.len());
            for r in rows {
                b.append_value(f(r));
            }
            Arc::new(b.finish()) as ArrayRef
        };
        arrays.push(strings(&|r| Some(r.change.op.as_str())));
        arrays.push(longs(&|r| r.change.commit_lsn.0 as i64));
        arrays.push(longs(&|r| i64::from(r.change.seq)));
        let mut ts = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let mut partition = Int32Builder::with_capacity(rows.len());
        for r in rows {
            ts.append_value(r.change.commit_ts_ms);
            partition.append_value(r.partition);
        }
        arrays.push(Arc::new(ts.finish()));
        arrays.push(Arc::new(partition.finish()));
        arrays.push(longs(&|r| r.offset));
        arrays.push(Arc::new(unchanged.finish()));
        let mut exact = exact.into_iter();
        arrays.push(strings_owned(rows, |_| {
            exact
                .next()
                .filter(|e| !e.is_empty())
                .map(|e| serde_json::Value::Object(e).to_string())
        }));
        arrays.push(strings_owned(rows, |r| {
            let before = r.change.before.as_ref().filter(|_| r.change.op == "u")?;
            let object: serde_json::Map<String, serde_json::Value> = before
                .iter()
                .filter(|(_, d)| *d != Datum::Unchanged)
                .map(|(name, d)| {
                    let money = self
                        .columns
                        .iter()
                        .any(|(n, k)| n == name && *k == ColumnKind::Money);
                    let text = match d {
                        // money as its amount: the locale's currency text casts to nothing.
                        Datum::Value(v) if money => {
                            let text = v.to_pg_text();
                            money_digits(&text).unwrap_or(text).into()
                        }
                        Datum::Value(v) => v.to_pg_text().into(),
                        _ => serde_json::Value::Null,
                    };
                    (name.clone(), text)
                })
                .collect();
            Some(serde_json::Value::Object(object).to_string())
        }));
        if self.eav {
            arrays.push(strings(&|r| {
                r.change.attribute.as_ref().map(|(_, n, _)| n.as_str())
            }));
            arrays.push(strings(&|r| {
                r.change.attribute.as_ref().map(|(_, _, t)| t.as_str())
            }));
        }
        arrays.push(Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.key_change)),
        )));
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

fn strings_owned(rows: &[Row], mut f: impl FnMut(&Row) -> Option<String>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows.len(), 0);
    for r in rows {
        b.append_option(f(r));
    }
    Arc::new(b.finish())
}

/// A decimal's text as its unscaled value at `scale`; `None` when it has no such value
/// (NaN, infinities, more fraction digits, more than 38 digits).
fn unscaled(text: &str, scale: u32) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > scale as usize
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    v = v.checked_mul(10i128.checked_pow(scale - frac.len() as u32)?)?;
    // Within the declared precision is PostgreSQL's promise; Arrow's bound is 10^38.
    (v < 10i128.pow(MAX_DECIMAL_PRECISION)).then_some(if negative { -v } else { v })
}

/// money as cents, within decimal128(19, 2) (a locale without fraction digits can print
/// amounts wider than that).
fn money(v: &Value) -> Option<i128> {
    let cents = match v {
        Value::Other { text, .. } => unscaled(&money_digits(text).ok()?, 2),
        Value::Numeric(text) => unscaled(text, 2),
        _ => None,
    }?;
    (cents.abs() < 10i128.pow(19)).then_some(cents)
}

fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::Int8(x) => Some(*x),
        Value::Int4(x) => Some(i64::from(*x)),
        Value::Other { text, .. } => text.parse().ok(),
        _ => None,
    }
}

fn bit(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Other { text, .. } if text == "1" || text == "0" => Some(text == "1"),
        _ => None,
    }
}

/// Whether the typed column holds `v` exactly.
fn fits(kind: &ColumnKind, v: &Value) -> bool {
    match (kind, v) {
        (ColumnKind::Bool, Value::Bool(_))
        | (ColumnKind::Int16, Value::Int2(_))
        | (ColumnKind::Int32, Value::Int4(_))
        | (ColumnKind::Float32, Value::Float4(_))
        | (ColumnKind::Float64, Value::Float8(_))
        | (ColumnKind::Bytes, Value::Bytea(_))
        | (ColumnKind::Date, Value::Date(DateValue::Days(_)))
        | (ColumnKind::Time { .. }, Value::Time(0..MICROS_PER_DAY))
        | (ColumnKind::Timestamp { .. }, Value::Timestamp(TimestampValue::Micros(_)))
        | (ColumnKind::TimestampTz { .. }, Value::TimestampTz(TimestampValue::Micros(_))) => true,
        (ColumnKind::Bit, v) => bit(v).is_some(),
        (ColumnKind::Int64, v) => int64(v).is_some(),
        (ColumnKind::Money, v) => money(v).is_some(),
        (ColumnKind::Decimal { scale, .. }, Value::Numeric(text))
            if arrow_type(kind) != DataType::Utf8 =>
        {
            unscaled(text, *scale).is_some()
        }
        (ColumnKind::Array(inner), Value::Array(items)) => items
            .iter()
            .flatten()
            .all(|item| !matches!(item, Value::Array(_)) && fits(inner, item)),
        (kind, Value::Array(_)) => arrow_type(kind) == DataType::Utf8,
        (kind, _) => arrow_type(kind) == DataType::Utf8,
    }
}

/// One column's array from values that [`fits`] admitted (`None`: NULL).
fn build(kind: &ColumnKind, values: &[Option<&Value>]) -> Result<ArrayRef, ArrowError> {
    let n = values.len();
    macro_rules! column {
        ($builder:expr, $get:expr) => {{
            let mut b = $builder;
            for v in values {
                b.append_option(v.and_then($get));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match kind {
        ColumnKind::Bool => column!(BooleanBuilder::with_capacity(n), |v: &Value| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }),
        ColumnKind::Bit => column!(BooleanBuilder::with_capacity(n), bit),
        ColumnKind::Int16 => column!(Int16Builder::with_capacity(n), |v: &Value| match v {
            Value::Int2(x) => Some(*x),
            _ => None,
        }),
        ColumnKind::Int32 => column!(Int32Builder::with_capacity(n), |v: &Value| match v {
            Value::Int4(x) => Some(*x),
            _ => None,
        }),
        ColumnKind::Int64 => column!(Int64Builder::with_capacity(n), int64),
        ColumnKind::Float32 => column!(Float32Builder::with_capacity(n), |v: &Value| match v {
            Value::Float4(x) => Some(*x),
            _ => None,
        }),
        ColumnKind::Float64 => column!(Float64Builder::with_capacity(n), |v: &Value| match v {
            Value::Float8(x) => Some(*x),
            _ => None,
        }),
        ColumnKind::Money => column!(
            Decimal128Builder::with_capacity(n).with_precision_and_scale(19, 2)?,
            money
        ),
        ColumnKind::Decimal { precision, scale } if *precision <= MAX_DECIMAL_PRECISION => {
            column!(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(*precision as u8, *scale as i8)?,
                |v: &Value| match v {
                    Value::Numeric(text) => unscaled(text, *scale),
                    _ => None,
                }
            )
        }
        ColumnKind::Bytes => column!(BinaryBuilder::with_capacity(n, n * 16), |v: &Value| {
            match v {
                Value::Bytea(b) => Some(b.clone()),
                _ => None,
            }
        }),
        ColumnKind::Date => column!(Date32Builder::with_capacity(n), |v: &Value| match v {
            Value::Date(DateValue::Days(d)) => Some(*d),
            _ => None,
        }),
        ColumnKind::Time { .. } => {
            column!(Time64MicrosecondBuilder::with_capacity(n), |v: &Value| {
                match v {
                    Value::Time(t) => Some(*t),
                    _ => None,
                }
            })
        }
        ColumnKind::Timestamp { .. } => {
            column!(
                TimestampMicrosecondBuilder::with_capacity(n),
                |v: &Value| {
                    match v {
                        Value::Timestamp(TimestampValue::Micros(t)) => Some(*t),
                        _ => None,
                    }
                }
            )
        }
        ColumnKind::TimestampTz { .. } => column!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            |v: &Value| match v {
                Value::TimestampTz(TimestampValue::Micros(t)) => Some(*t),
                _ => None,
            }
        ),
        ColumnKind::Array(inner) => {
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0i32);
            let mut flat: Vec<Option<&Value>> = Vec::new();
            let mut valid = Vec::with_capacity(n);
            for v in values {
                if let Some(Value::Array(items)) = v {
                    flat.extend(items.iter().map(Option::as_ref));
                    valid.push(true);
                } else {
                    valid.push(false);
                }
                let end = i32::try_from(flat.len())
                    .map_err(|_| ArrowError::ComputeError("array column over 2^31 items".into()))?;
                offsets.push(end);
            }
            let child = build(inner, &flat)?;
            let field = Arc::new(Field::new_list_field(child.data_type().clone(), true));
            Arc::new(ListArray::try_new(
                field,
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                child,
                Some(NullBuffer::from(valid)),
            )?)
        }
        ColumnKind::Decimal { .. }
        | ColumnKind::Numeric
        | ColumnKind::TimeTz
        | ColumnKind::Interval
        | ColumnKind::Uuid
        | ColumnKind::Json
        | ColumnKind::Xml
        | ColumnKind::Bits { .. }
        | ColumnKind::Enum(_)
        | ColumnKind::Text => {
            column!(StringBuilder::with_capacity(n, n * 16), |v: &Value| Some(
                v.to_pg_text()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_at_their_scale_or_not_at_all() {
        assert_eq!(unscaled("123.45", 2), Some(12345));
        assert_eq!(unscaled("-0.5", 2), Some(-50));
        assert_eq!(unscaled("7", 3), Some(7000));
        assert_eq!(unscaled("NaN", 2), None);
        assert_eq!(unscaled("Infinity", 2), None);
        assert_eq!(unscaled("1.234", 2), None);
        assert_eq!(unscaled(&"9".repeat(39), 0), None);
        assert_eq!(unscaled(&"9".repeat(38), 0), Some(10i128.pow(38) - 1));
        assert_eq!(
            money(&Value::Other {
                type_oid: 790,
                text: "-$1,234.50".into()
            }),
            Some(-123450)
        );
        let money_of = |text: &str| money(&Value::Numeric(text.into()));
        assert_eq!(money_of("92233720368547758.07"), Some(9223372036854775807));
        assert_eq!(money_of("100000000000000000.00"), None);
    }

    #[test]
    fn values_that_do_not_fit_are_left_to_the_exact_column() {
        let date = ColumnKind::Date;
        assert!(fits(&date, &Value::Date(DateValue::Days(3))));
        assert!(!fits(&date, &Value::Date(DateValue::Infinity)));
        let ints = ColumnKind::Array(Box::new(ColumnKind::Int32));
        let flat = Value::Array(vec![Some(Value::Int4(1)), None]);
        let nested = Value::Array(vec![Some(Value::Array(vec![Some(Value::Int4(1))]))]);
        assert!(fits(&ints, &flat));
        assert!(!fits(&ints, &nested));
        assert!(fits(&ColumnKind::Numeric, &Value::Numeric("NaN".into())));
        let time = ColumnKind::Time { precision: 6 };
        assert!(fits(&time, &Value::Time(MICROS_PER_DAY - 1)));
        assert!(
            !fits(&time, &Value::Time(MICROS_PER_DAY)),
            "24:00:00 goes to _freshet_exact"
        );
    }
}
