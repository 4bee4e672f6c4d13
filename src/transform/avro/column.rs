//! One column in Debezium's form: its Avro type as Confluent's AvroConverter writes
//! Debezium's Connect schema (`connect.name` and friends), and its values.
//!
//! Where Debezium's form loses information (a numeric NaN, an infinite date, a money's
//! currency text, a multi-dimensional array), the writer says so and the envelope's `freshet`
//! field carries PostgreSQL's exact text of the value.

use std::collections::HashSet;

use serde_json::{json, Value as Json};

use super::{put_bytes, put_long, put_str};
use crate::change::{DateValue, TimestampValue, TypeInfo, TypeKind, Value};
use crate::config::{DecimalHandling, TimePrecision};
use crate::kind::ColumnKind;
use crate::source::value::oid;

pub use crate::kind::numeric_typmod;

/// Debezium's timestamps for ±infinity: the PostgreSQL JDBC driver's constants, written as
/// they are in a microsecond column and divided by 1000 in a millisecond one.
const POSITIVE_INFINITY_TS: i64 = 9_223_372_036_825_200_000;
const NEGATIVE_INFINITY_TS: i64 = -9_223_372_036_832_400_000;
/// Debezium's dates for ±infinity: the epoch days of the JDBC driver's infinite dates as
/// Java's LocalDate wraps them (both in the year -5877611).
const POSITIVE_INFINITY_DAYS: i32 = -2_147_472_692;
const NEGATIVE_INFINITY_DAYS: i32 = -2_147_472_691;

/// What Debezium's mapping depends on.
#[derive(Clone, Debug)]
pub struct Options {
    pub time_precision: TimePrecision,
    pub decimal_handling: DecimalHandling,
    /// What an unchanged TOASTed value holds where the column's type can hold text.
    pub placeholder: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            time_precision: TimePrecision::Adaptive,
            decimal_handling: DecimalHandling::Precise,
            placeholder: "__debezium_unavailable_value".into(),
        }
    }
}

/// How one column's value is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Enc {
    Bool,
    Int,
    Long,
    Float,
    Double,
    /// Connect's Decimal: two's-complement unscaled bytes.
    Decimal {
        scale: u32,
    },
    /// `io.debezium.data.VariableScaleDecimal`: {scale, value}.
    VariableDecimal,
    /// A numeric as a double or as its text (decimal_handling double / string).
    DecimalDouble,
    DecimalString,
    /// money: a decimal of its text's digits.
    Money(Box<Enc>),
    /// Strings: the value's PostgreSQL text (text, json, uuid, enums, ranges, …).
    String,
    Bytes,
    /// Days since the epoch.
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    /// `io.debezium.time.ZonedTimestamp`: ISO 8601 in UTC, `digits` fraction digits.
    ZonedTimestamp {
        digits: u8,
    },
    /// `io.debezium.time.ZonedTime`: the time in UTC, ISO 8601.
    ZonedTime,
    /// `io.debezium.time.MicroDuration`: microseconds, a month as 365.25/12 days.
    MicroDuration,
    /// bit(1).
    Bit,
    /// `io.debezium.data.Bits`: little-endian bytes of the bit string.
    Bits,
    /// An array of nullable elements.
    Array(Box<Enc>),
}

/// A column's Avro type without its nullability, and how to write it.
pub fn column_type(
    kind: &ColumnKind,
    options: &Options,
    defined: &mut HashSet<&'static str>,
) -> (Json, Enc) {
    let semantic =
        |base: &str, name: &str| json!({"type": base, "connect.version": 1, "connect.name": name});
    let adaptive = options.time_precision == TimePrecision::Adaptive;
    match kind {
        ColumnKind::Enum(labels) => (
            json!({"type": "string", "connect.version": 1,
                   "connect.parameters": {"allowed": labels.join(",")},
                   "connect.name": "io.debezium.data.Enum"}),
            Enc::String,
        ),
        ColumnKind::Array(elem) => {
            let (item, enc) = column_type(elem, options, defined);
            (
                json!({"type": "array", "items": ["null", item]}),
                Enc::Array(Box::new(enc)),
            )
        }
        ColumnKind::Bool => (json!("boolean"), Enc::Bool),
        ColumnKind::Int16 => (json!({"type": "int", "connect.type": "int16"}), Enc::Int),
        ColumnKind::Int32 => (json!("int"), Enc::Int),
        ColumnKind::Int64 => (json!("long"), Enc::Long),
        ColumnKind::Float32 => (json!("float"), Enc::Float),
        ColumnKind::Float64 => (json!("double"), Enc::Double),
        ColumnKind::Decimal { precision, scale } => {
            numeric(Some((*precision, *scale)), options, defined)
        }
        ColumnKind::Numeric => numeric(None, options, defined),
        ColumnKind::Money => {
            let (mut schema, enc) = numeric(Some((64, 2)), options, defined);
            // Debezium gives money no precision: AvroConverter's default of 64 stands.
            if let Some(p) = schema
                .get_mut("connect.parameters")
                .and_then(Json::as_object_mut)
            {
                p.remove("connect.decimal.precision");
            }
            (schema, Enc::Money(Box::new(enc)))
        }
        ColumnKind::Bytes => (json!("bytes"), Enc::Bytes),
        ColumnKind::Date if adaptive => (semantic("int", "io.debezium.time.Date"), Enc::Date),
        ColumnKind::Date => (
            json!({"type": "int", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Date", "logicalType": "date"}),
            Enc::Date,
        ),
        ColumnKind::Time { precision } if adaptive && *precision <= 3 => {
            (semantic("int", "io.debezium.time.Time"), Enc::TimeMillis)
        }
        ColumnKind::Time { .. } if adaptive => (
            semantic("long", "io.debezium.time.MicroTime"),
            Enc::TimeMicros,
        ),
        ColumnKind::Time { .. } => (
            json!({"type": "int", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Time", "logicalType": "time-millis"}),
            Enc::TimeMillis,
        ),
        ColumnKind::Timestamp { precision } if adaptive && *precision <= 3 => (
            semantic("long", "io.debezium.time.Timestamp"),
            Enc::TimestampMillis,
        ),
        ColumnKind::Timestamp { .. } if adaptive => (
            semantic("long", "io.debezium.time.MicroTimestamp"),
            Enc::TimestampMicros,
        ),
        ColumnKind::Timestamp { .. } => (
            json!({"type": "long", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Timestamp", "logicalType": "timestamp-millis"}),
            Enc::TimestampMillis,
        ),
        ColumnKind::TimestampTz { precision } => (
            semantic("string", "io.debezium.time.ZonedTimestamp"),
            Enc::ZonedTimestamp { digits: *precision },
        ),
        ColumnKind::TimeTz => (
            semantic("string", "io.debezium.time.ZonedTime"),
            Enc::ZonedTime,
        ),
        ColumnKind::Interval => (
            semantic("long", "io.debezium.time.MicroDuration"),
            Enc::MicroDuration,
        ),
        ColumnKind::Uuid => (semantic("string", "io.debezium.data.Uuid"), Enc::String),
        ColumnKind::Json => (semantic("string", "io.debezium.data.Json"), Enc::String),
        ColumnKind::Xml => (semantic("string", "io.debezium.data.Xml"), Enc::String),
        ColumnKind::Bit => (json!("boolean"), Enc::Bit),
        ColumnKind::Bits { length } => {
            let length = length.map_or(i32::MAX as u32, |l| l);
            (
                json!({"type": "bytes", "connect.version": 1, "connect.parameters": {"length": length.to_string()}, "connect.name": "io.debezium.data.Bits"}),
                Enc::Bits,
            )
        }
        ColumnKind::Text => (json!("string"), Enc::String),
    }
}

fn numeric(
    typmod: Option<(u32, u32)>,
    options: &Options,
    defined: &mut HashSet<&'static str>,
) -> (Json, Enc) {
    match (options.decimal_handling, typmod) {
        (DecimalHandling::Double, _) => (json!("double"), Enc::DecimalDouble),
        (DecimalHandling::String, _) => (json!("string"), Enc::DecimalString),
        (DecimalHandling::Precise, Some((precision, scale))) => (
            json!({
                "type": "bytes", "scale": scale, "precision": precision, "connect.version": 1,
                "connect.parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()},
                "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"
            }),
            Enc::Decimal { scale },
        ),
        (DecimalHandling::Precise, None) => {
            const NAME: &str = "io.debezium.data.VariableScaleDecimal";
            let schema = if defined.insert(NAME) {
                json!({
                    "type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
                    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                    "connect.doc": "Variable scaled decimal", "connect.version": 1, "connect.name": NAME
                })
            } else {
                json!(NAME)
            };
            (schema, Enc::VariableDecimal)
        }
    }
}

/// Whether the written value is PostgreSQL's value exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Exact {
    Yes,
    /// The envelope must carry the value's PostgreSQL text.
    No,
}

impl Exact {
    fn and(self, other: Exact) -> Exact {
        if self == Exact::No {
            Exact::No
        } else {
            other
        }
    }
}

/// Writes `v` as `enc` (no union branch).
pub fn put_value(out: &mut Vec<u8>, enc: &Enc, v: &Value) -> Result<Exact, String> {
    let mut exact = Exact::Yes;
    match (enc, v) {
        (Enc::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (Enc::Int, Value::Int2(i)) => put_long(out, i64::from(*i)),
        (Enc::Int, Value::Int4(i)) => put_long(out, i64::from(*i)),
        (Enc::Long, Value::Int8(i)) => put_long(out, *i),
        (Enc::Float, Value::Float4(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Enc::Double, Value::Float8(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Enc::Decimal { .. } | Enc::VariableDecimal | Enc::DecimalDouble, Value::Numeric(t))
            if is_special(t) =>
        {
            // Debezium's precise mode has no NaN or infinity: a zero, the text beside it.
            match enc {
                Enc::DecimalDouble => put_double(out, special_double(t)),
                _ => put_decimal(out, enc, "0")?,
            }
            exact = Exact::No;
        }
        (Enc::Decimal { .. }, Value::Numeric(text)) => put_decimal(out, enc, text)?,
        (Enc::VariableDecimal, Value::Numeric(text)) => {
            // Debezium strips trailing fraction zeros: 1.50 is {scale 1, 15}. PostgreSQL's
            // display scale then travels as the exact text.
            let stripped = match text.split_once('.') {
                Some((int, frac)) => {
                    let frac = frac.trim_end_matches('0');
                    if frac.is_empty() {
                        int.to_owned()
                    } else {
                        format!("{int}.{frac}")
                    }
                }
                None => text.clone(),
            };
            if stripped != *text {
                exact = Exact::No;
            }
            put_decimal(out, enc, &stripped)?
        }
        (Enc::DecimalDouble, Value::Numeric(text)) => {
            let d: f64 = text.parse().map_err(|e| format!("{text}: {e}"))?;
            put_double(out, d);
            // A double is the user's choice for consumers; Freshet keeps the digits.
            exact = Exact::No;
        }
        (Enc::DecimalString, Value::Numeric(text)) => match text.as_str() {
            // Debezium's spellings; the exact text beside them.
            "NaN" | "Infinity" | "-Infinity" => {
                put_str(
                    out,
                    match text.as_str() {
                        "NaN" => "NAN",
                        "Infinity" => "POSITIVE_INFINITY",
                        _ => "NEGATIVE_INFINITY",
                    },
                );
                exact = Exact::No;
            }
            _ => put_str(out, text),
        },
        (Enc::Money(inner), Value::Other { text, .. }) => {
            let digits = money_digits(text)?;
            match &**inner {
                Enc::DecimalDouble => {
                    put_double(out, digits.parse().map_err(|e| format!("{text}: {e}"))?)
                }
                Enc::DecimalString => put_str(out, &digits),
                enc => put_decimal(out, enc, &digits)?,
            }
            exact = Exact::No;
        }
        (Enc::Bytes, Value::Bytea(b)) => put_bytes(out, b),
        (Enc::Date, Value::Date(d)) => {
            let days = match d {
                DateValue::Days(d) => *d,
                DateValue::Infinity => {
                    exact = Exact::No;
                    POSITIVE_INFINITY_DAYS
                }
                DateValue::NegInfinity => {
                    exact = Exact::No;
                    NEGATIVE_INFINITY_DAYS
                }
            };
            put_long(out, i64::from(days))
        }
        (Enc::TimeMillis, Value::Time(t)) => {
            put_long(out, t.div_euclid(1000));
            if t % 1000 != 0 {
                exact = Exact::No;
            }
        }
        (Enc::TimeMicros, Value::Time(t)) => put_long(out, *t),
        (
            Enc::TimestampMillis | Enc::TimestampMicros,
            Value::Timestamp(ts) | Value::TimestampTz(ts),
        ) => {
            let millis = matches!(enc, Enc::TimestampMillis);
            let v = match ts {
                TimestampValue::Micros(us) if millis => {
                    if us % 1000 != 0 {
                        exact = Exact::No;
                    }
                    us.div_euclid(1000)
                }
                TimestampValue::Micros(us) => *us,
                TimestampValue::Infinity => {
                    exact = Exact::No;
                    POSITIVE_INFINITY_TS / if millis { 1000 } else { 1 }
                }
                TimestampValue::NegInfinity => {
                    exact = Exact::No;
                    NEGATIVE_INFINITY_TS / if millis { 1000 } else { 1 }
                }
            };
            put_long(out, v)
        }
        (Enc::ZonedTimestamp { digits }, Value::TimestampTz(ts)) => match ts {
            TimestampValue::Micros(us) => {
                if !put_zoned_timestamp(out, *us, *digits) {
                    exact = Exact::No;
                }
            }
            TimestampValue::Infinity => {
                exact = Exact::No;
                put_str(out, "infinity")
            }
            TimestampValue::NegInfinity => {
                exact = Exact::No;
                put_str(out, "-infinity")
            }
        },
        (Enc::ZonedTime, Value::Other { text, .. }) => {
            put_str(out, &zoned_time(text)?);
            exact = Exact::No;
        }
        (Enc::MicroDuration, Value::Other { text, .. }) => {
            put_long(out, interval_micros(text)?);
            exact = Exact::No;
        }
        (Enc::Bit, Value::Other { text, .. }) => {
            out.push(u8::from(text == "1"));
            // varbit(1) may also be empty.
            if text != "1" && text != "0" {
                exact = Exact::No;
            }
        }
        (Enc::Bits, Value::Other { text, .. }) => {
            put_bytes(out, &bits(text)?);
            exact = Exact::No;
        }
        (Enc::String, Value::Text(s) | Value::Json(s) | Value::Jsonb(s) | Value::Enum(s)) => {
            put_str(out, s)
        }
        (Enc::String, Value::Other { text, .. }) => put_str(out, text),
        (Enc::String, other @ Value::Uuid(_)) => put_str(out, &other.to_pg_text()),
        (Enc::Array(item), Value::Array(items)) => {
            // A multi-dimensional array goes out flat, its shape in the exact text.
            let mut flat = Vec::with_capacity(items.len());
            let nested = flatten(items, &mut flat);
            if nested {
                exact = Exact::No;
            }
            if !flat.is_empty() {
                put_long(out, flat.len() as i64);
                for i in flat {
                    match i {
                        None => put_long(out, 0),
                        Some(v) => {
                            put_long(out, 1);
                            exact = exact.and(put_value(out, item, v)?);
                        }
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
    Ok(exact)
}

/// NaN and the infinities: values no key form holds.
pub fn is_non_finite(v: &Value) -> bool {
    match v {
        Value::Numeric(t) => is_special(t),
        Value::Date(d) => !matches!(d, DateValue::Days(_)),
        Value::Timestamp(t) | Value::TimestampTz(t) => !matches!(t, TimestampValue::Micros(_)),
        _ => false,
    }
}

/// Whether Debezium writes NULL for `v` in a nullable column: its precise decimals have no
/// NaN or infinity.
pub fn null_in_debezium(enc: &Enc, v: &Value) -> bool {
    matches!((enc, v), (Enc::Decimal { .. } | Enc::VariableDecimal, Value::Numeric(t)) if is_special(t))
}

/// Writes what an unchanged TOASTed value holds in Debezium's form: the placeholder where
/// the type holds text or bytes. False when it holds neither: the column then holds NULL,
/// or the type's zero when NOT NULL.
pub fn put_placeholder(out: &mut Vec<u8>, enc: &Enc, placeholder: &str) -> bool {
    match enc {
        Enc::String | Enc::DecimalString | Enc::ZonedTimestamp { .. } | Enc::ZonedTime => {
            put_str(out, placeholder)
        }
        Enc::Bytes | Enc::Bits => put_str(out, placeholder),
        // As Debezium: text and bytes arrays hold the placeholder, integer arrays its bytes.
        Enc::Array(item) => match **item {
            Enc::String | Enc::Bytes => {
                put_long(out, 1);
                put_long(out, 1);
                put_str(out, placeholder);
                put_long(out, 0);
            }
            Enc::Int | Enc::Long => {
                put_long(out, placeholder.len() as i64);
                for b in placeholder.bytes() {
                    put_long(out, 1);
                    put_long(out, i64::from(b));
                }
                put_long(out, 0);
            }
            _ => return false,
        },
        _ => return false,
    }
    true
}

/// Writes the type's zero (a NOT NULL column whose value Debezium's form cannot hold).
pub fn put_zero(out: &mut Vec<u8>, enc: &Enc) {
    match enc {
        Enc::Bool | Enc::Bit => out.push(0),
        Enc::Int
        | Enc::Long
        | Enc::Date
        | Enc::TimeMillis
        | Enc::TimeMicros
        | Enc::TimestampMillis
        | Enc::TimestampMicros
        | Enc::MicroDuration
        | Enc::Array(_) => put_long(out, 0),
        Enc::Float => out.extend_from_slice(&0f32.to_le_bytes()),
        Enc::Double | Enc::DecimalDouble => put_double(out, 0.0),
        Enc::Money(inner) => put_zero(out, inner),
        Enc::Decimal { .. } | Enc::VariableDecimal => {
            // Infallible on "0".
            let _ = put_decimal(out, enc, "0");
        }
        Enc::DecimalString
        | Enc::String
        | Enc::Bytes
        | Enc::Bits
        | Enc::ZonedTimestamp { .. }
        | Enc::ZonedTime => put_str(out, ""),
    }
}

fn flatten<'a>(items: &'a [Option<Value>], flat: &mut Vec<Option<&'a Value>>) -> bool {
    let mut nested = false;
    for i in items {
        match i {
            Some(Value::Array(inner)) => {
                nested = true;
                flatten(inner, flat);
            }
            other => flat.push(other.as_ref()),
        }
    }
    nested
}

fn is_special(text: &str) -> bool {
    matches!(text, "NaN" | "Infinity" | "-Infinity")
}

fn special_double(text: &str) -> f64 {
    match text {
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

fn put_double(out: &mut Vec<u8>, d: f64) {
    out.extend_from_slice(&d.to_le_bytes());
}

fn put_decimal(out: &mut Vec<u8>, enc: &Enc, text: &str) -> Result<(), String> {
    match enc {
        Enc::Decimal { scale } => put_bytes(out, &decimal_bytes(text, *scale)?),
        _ => {
            let scale = text.split_once('.').map_or(0, |(_, f)| f.len()) as u32;
            put_long(out, i64::from(scale));
            put_bytes(out, &decimal_bytes(text, scale)?);
        }
    }
    Ok(())
}

/// money's text (`$1,234.56`, `-$0.50`, `($0.50)` in some locales) as decimal digits.
pub(crate) fn money_digits(text: &str) -> Result<String, String> {
    let negative = text.contains('-') || text.starts_with('(');
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if digits.is_empty() || digits.matches('.').count() > 1 {
        return Err(format!("{text:?} is not a money amount"));
    }
    Ok(if negative {
        format!("-{digits}")
    } else {
        digits
    })
}

/// timetz text (`HH:MM:SS[.ffffff]±HH[:MM[:SS]]`) as Debezium's ZonedTime: the time in
/// UTC, `HH:MM:SS[.ffffff]Z`.
fn zoned_time(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not a time with time zone");
    let split = text.rfind(['+', '-']).ok_or_else(bad)?;
    let (time, zone) = text.split_at(split);
    let mut micros = crate::source::value::parse_text(
        &TypeInfo {
            oid: oid::TIME,
            kind: TypeKind::Scalar,
        },
        time,
    )
    .ok()
    .and_then(|v| match v {
        Value::Time(t) => Some(t),
        _ => None,
    })
    .ok_or_else(bad)?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let mut offset = 0i64;
    for (i, part) in zone[1..].split(':').enumerate() {
        let n: i64 = part.parse().map_err(|_| bad())?;
        offset += n * [3600, 60, 1].get(i).ok_or_else(bad)?;
    }
    micros = (micros - sign * offset * 1_000_000).rem_euclid(86_400_000_000);
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    Ok(s)
}

/// An interval in the `postgres` IntervalStyle the replication session pins
/// (`1 year 2 mons -3 days +04:05:06.5`) as Debezium's MicroDuration.
fn interval_micros(text: &str) -> Result<i64, String> {
    const DAY: f64 = 86_400_000_000.0;
    let month = 365.25 / 12.0 * DAY;
    let bad = || format!("{text:?} is not an interval");
    let mut total = 0f64;
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word.contains(':') {
            let negative = word.starts_with('-');
            let mut micros = 0f64;
            for (i, part) in word.trim_start_matches(['+', '-']).split(':').enumerate() {
                let n: f64 = part.parse().map_err(|_| bad())?;
                micros += n * [3600e6, 60e6, 1e6].get(i).ok_or_else(bad)?;
            }
            total += if negative { -micros } else { micros };
            continue;
        }
        let n: f64 = word.parse().map_err(|_| bad())?;
        let unit = words.next().ok_or_else(bad)?;
        total += n * match unit.trim_end_matches('s') {
            "year" => 12.0 * month,
            "mon" => month,
            "day" => DAY,
            _ => return Err(bad()),
        };
    }
    Ok(total as i64)
}

/// A bit string's text as Debezium's Bits (Java's `BitSet.toByteArray`): bit i from the
/// right in byte i/8, bit i%8, no bytes past the highest set bit.
fn bits(text: &str) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; text.len().div_ceil(8)];
    for (i, c) in text.bytes().rev().enumerate() {
        match c {
            b'1' => out[i / 8] |= 1 << (i % 8),
            b'0' => {}
            _ => return Err(format!("{text:?} is not a bit string")),
        }
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Debezium's ZonedTimestamp of `micros` since the epoch: `YYYY-MM-DDTHH:MM:SS[.f…]Z`, the
/// fraction padded to the column's precision. Written straight into `out`: this runs for
/// every timestamptz of every change. False when the year has no four-digit form (the
/// exact text must then travel beside it).
pub fn put_zoned_timestamp(out: &mut Vec<u8>, micros: i64, digits: u8) -> bool {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        // Years ISO 8601 writes with a sign: rare enough for chrono.
        let text = chrono::DateTime::from_timestamp_micros(micros)
            .map(|t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .to_string()
            })
            .unwrap_or_default();
        put_str(out, &text);
        return false;
    }
    let len = 20 + if digits > 0 { 1 + digits as usize } else { 0 };
    put_long(out, len as i64);
    let two = |out: &mut Vec<u8>, n: i64| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, tod / 3600);
    out.push(b':');
    two(out, tod / 60 % 60);
    out.push(b':');
    two(out, tod % 60);
    if digits > 0 {
        out.push(b'.');
        let mut f = frac;
        let mut buf = [b'0'; 6];
        for b in buf.iter_mut().rev() {
            *b = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&buf[..digits as usize]);
    }
    out.push(b'Z');
    true
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A decimal's text as the two's-complement big-endian unscaled integer Avro wants.
pub fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
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
mod tests {
    use super::*;

    fn zoned(micros: i64, digits: u8) -> String {
        let mut out = Vec::new();
        let four_digit_year = put_zoned_timestamp(&mut out, micros, digits);
        assert_eq!(
            four_digit_year,
            (-62_167_219_200_000_000..253_402_300_800_000_000).contains(&micros)
        );
        let len = out[0] as usize / 2;
        String::from_utf8(out[out.len() - len..].to_vec()).unwrap()
    }

    #[test]
    fn zoned_timestamps_are_utc_iso_padded_to_the_column_precision() {
        assert_eq!(zoned(0, 6), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            zoned(1_767_323_045_120_000, 6),
            "2026-01-02T03:04:05.120000Z"
        );
        assert_eq!(zoned(1_767_323_045_120_000, 3), "2026-01-02T03:04:05.120Z");
        assert_eq!(zoned(1_767_323_045_000_000, 0), "2026-01-02T03:04:05Z");
        assert_eq!(zoned(-1, 6), "1969-12-31T23:59:59.999999Z");
        assert_eq!(zoned(951_782_400_000_000, 6), "2000-02-29T00:00:00.000000Z");
        for micros in [
            -62_135_596_800_000_000i64,
            253_402_300_799_999_999,
            12345,
            -987_654_321,
        ] {
            let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                zoned(micros, 6),
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
        }
    }

    #[test]
    fn other_types_take_debezium_s_forms() {
        assert_eq!(interval_micros("1 day 02:00:00").unwrap(), 93_600_000_000);
        assert_eq!(interval_micros("-00:00:01.5").unwrap(), -1_500_000);
        assert_eq!(
            interval_micros("1 mon").unwrap(),
            (365.25 / 12.0 * 86_400_000_000.0) as i64
        );
        assert_eq!(
            interval_micros("1 year -2 days").unwrap(),
            31_384_800_000_000
        );
        assert!(interval_micros("P1D").is_err());
        assert_eq!(zoned_time("12:00:00+02").unwrap(), "10:00:00Z");
        assert_eq!(zoned_time("00:30:00.25-01:30").unwrap(), "02:00:00.25Z");
        assert_eq!(bits("101").unwrap(), vec![0b101]);
        assert_eq!(bits("100000000").unwrap(), vec![0, 1]);
        assert_eq!(bits("0000000001").unwrap(), vec![1]);
        assert!(bits("000").unwrap().is_empty());
        assert_eq!(money_digits("-$1,234.50").unwrap(), "-1234.50");
        assert!(money_digits("$").is_err());
    }
}
