//! Lake rows as PostgreSQL's COPY text: what the embedded warehouse's COPY FROM STDIN reads.
//!
//! Each value is written as PostgreSQL's own text for the warehouse column's type, so the
//! server parses it exactly (decimals as digits, timestamps with their microseconds,
//! `bytea` in hex). A value the typed column could not hold (NaN, an infinite date, a wide
//! numeric, a multi-dimensional array) is taken from `_freshet_exact`, PostgreSQL's text as
//! the source printed it.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType, TimestampMillisecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime};

use crate::batcher::columns::{EXACT, KEY_CHANGE};
use crate::loadgen::data::copy_escape as escape;

/// Appends the batch's rows to `out` as COPY text lines; the first `table_columns` columns
/// are the source table's (the ones `_freshet_exact` may name).
pub fn encode(batch: &RecordBatch, table_columns: usize, out: &mut String) -> Result<(), String> {
    let schema = batch.schema();
    let exact = schema
        .index_of(EXACT)
        .ok()
        .map(|i| batch.column(i).as_string_opt::<i32>())
        .ok_or_else(|| format!("no {EXACT} column"))?
        .ok_or_else(|| format!("{EXACT} is not text"))?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    // An object written before the key-change marker lacks its column, the stage's last.
    let unmarked = schema.index_of(KEY_CHANGE).is_err();
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let overrides: Option<serde_json::Map<String, serde_json::Value>> = if exact.is_null(row) {
            None
        } else {
            serde_json::from_str(exact.value(row))
                .map_err(|e| format!("row {row}: {EXACT} is not a JSON object: {e}"))?
        };
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            let exact_text = overrides
                .as_ref()
                .filter(|_| i < table_columns)
                .and_then(|o| o.get(names[i]))
                .and_then(|v| v.as_str());
            if let Some(t) = exact_text {
                escape(t, out);
                continue;
            }
            text.clear();
            if value(column.as_ref(), row, &mut text)
                .map_err(|e| format!("column {}: {e}", names[i]))?
            {
                escape(&text, out);
            } else {
                out.push_str("\\N");
            }
        }
        if unmarked {
            out.push_str("\t\\N");
        }
        out.push('\n');
    }
    Ok(())
}

/// Writes PostgreSQL's text of the value at `row`; false when it is NULL.
fn value(a: &dyn Array, row: usize, out: &mut String) -> Result<bool, String> {
    if a.is_null(row) {
        return Ok(false);
    }
    match a.data_type() {
        DataType::Boolean => out.push(if a.as_boolean().value(row) { 't' } else { 'f' }),
        DataType::Int16 => push(out, a.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => push(out, a.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => push(out, a.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(row)), out),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(_, scale) => {
            decimal(a.as_primitive::<Decimal128Type>().value(row), *scale, out)
        }
        DataType::Utf8 => out.push_str(a.as_string::<i32>().value(row)),
        DataType::Binary => {
            out.push_str("\\x");
            for b in a.as_binary::<i32>().value(row) {
                let _ = write!(out, "{b:02x}");
            }
        }
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(row);
            let date = NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163))
                .ok_or_else(|| format!("date {days} days from 1970 is out of range"))?;
            date_text(date, out);
            era(date, out);
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let us = a.as_primitive::<Time64MicrosecondType>().value(row);
            let secs = u32::try_from(us.div_euclid(1_000_000)).unwrap_or(0);
            let nanos = u32::try_from(us.rem_euclid(1_000_000) * 1000).unwrap_or(0);
            let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .ok_or_else(|| format!("time of {us} µs is out of range"))?;
            let _ = write!(out, "{}", t.format("%H:%M:%S%.6f"));
        }
        DataType::Timestamp(unit, zone) => {
            let at = match unit {
                TimeUnit::Microsecond => DateTime::from_timestamp_micros(
                    a.as_primitive::<TimestampMicrosecondType>().value(row),
                ),
                TimeUnit::Millisecond => DateTime::from_timestamp_millis(
                    a.as_primitive::<TimestampMillisecondType>().value(row),
                ),
                other => return Err(format!("timestamps in {other:?} are not in the lake")),
            }
            .ok_or("timestamp out of range")?
            .naive_utc();
            timestamp_text(at, out);
            if zone.is_some() {
                out.push_str("+00");
            }
            era(at.date(), out);
        }
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let items = list.value(row);
            out.push('{');
            let mut item = String::new();
            for i in 0..items.len() {
                if i > 0 {
                    out.push(',');
                }
                item.clear();
                if value(items.as_ref(), i, &mut item)? {
                    out.push('"');
                    for c in item.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str("NULL");
                }
            }
            out.push('}');
        }
        other => return Err(format!("Arrow type {other} is not in the lake")),
    }
    Ok(true)
}

fn push(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// Rust's shortest text that reads back as the same float; PostgreSQL's words for the rest.
fn float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push(out, v);
    }
}

fn decimal(v: i128, scale: i8, out: &mut String) {
    let digits = v.unsigned_abs().to_string();
    if v < 0 {
        out.push('-');
    }
    match usize::try_from(scale) {
        Ok(0) | Err(_) => out.push_str(&digits),
        Ok(s) if digits.len() > s => {
            let (int, frac) = digits.split_at(digits.len() - s);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
        Ok(s) => {
            out.push_str("0.");
            out.push_str(&"0".repeat(s - digits.len()));
            out.push_str(&digits);
        }
    }
}

/// A date's text with the year as PostgreSQL writes it: 1 BC is year 0 in chrono.
fn date_text(d: NaiveDate, out: &mut String) {
    let year = if d.year() <= 0 {
        1 - d.year()
    } else {
        d.year()
    };
    let _ = write!(out, "{year:04}-{:02}-{:02}", d.month(), d.day());
}

fn timestamp_text(t: NaiveDateTime, out: &mut String) {
    date_text(t.date(), out);
    let _ = write!(out, " {}", t.time().format("%H:%M:%S%.6f"));
}

fn era(d: NaiveDate, out: &mut String) {
    if d.year() <= 0 {
        out.push_str(" BC");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_scale() {
        let text = |v: i128, s: i8| {
            let mut out = String::new();
            decimal(v, s, &mut out);
            out
        };
        assert_eq!(text(12345, 2), "123.45");
        assert_eq!(text(-5, 3), "-0.005");
        assert_eq!(text(0, 2), "0.00");
        assert_eq!(text(7, 0), "7");
    }

    #[test]
    fn copy_escapes_what_its_text_format_reserves() {
        let mut out = String::new();
        escape("a\tb\\c\nd\re", &mut out);
        assert_eq!(out, "a\\tb\\\\c\\nd\\re");
    }

    /// An object written before `_freshet_key_change` existed still fills the stage's row.
    #[test]
    fn an_object_without_the_key_change_column_copies_it_as_null() {
        use std::sync::Arc;

        use arrow_array::{ArrayRef, BooleanArray, Int32Array, StringArray};
        let columns = |marked: bool| {
            let mut c: Vec<(&str, ArrayRef)> = vec![
                ("id", Arc::new(Int32Array::from(vec![7]))),
                (EXACT, Arc::new(StringArray::from(vec![None::<&str>]))),
            ];
            if marked {
                c.push((KEY_CHANGE, Arc::new(BooleanArray::from(vec![true]))));
            }
            RecordBatch::try_from_iter(c).expect("a batch")
        };
        let text = |batch: RecordBatch| {
            let mut out = String::new();
            encode(&batch, 1, &mut out).expect("encoded");
            out
        };
        assert_eq!(text(columns(true)), "7\t\\N\tt\n");
        assert_eq!(text(columns(false)), "7\t\\N\t\\N\n");
    }

    #[test]
    fn dates_before_the_common_era_say_bc() {
        let mut out = String::new();
        let d = NaiveDate::from_ymd_opt(0, 3, 1).expect("a date");
        date_text(d, &mut out);
        era(d, &mut out);
        assert_eq!(out, "0001-03-01 BC");
    }
}
