//! PostgreSQL text-format values → typed [`Value`]s, and back out as JSON.

use crate::change::{DateValue, TimestampValue, Value};
pub use crate::change::{TypeInfo, TypeKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {text:?} as type {type_oid}: {why}")]
pub struct ValueError {
    pub type_oid: u32,
    pub text: String,
    pub why: String,
}

/// Built-in type OIDs this module decodes (`pg_type.oid`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const BOX: u32 = 603;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// PostgreSQL's MAXDIM: deeper nesting is not valid array text, and the bound keeps a
/// hostile `{{{{…` from recursing without end.
const MAX_ARRAY_DIMENSIONS: usize = 6;

/// Parses one column value from PostgreSQL's text output (under the session settings the
/// replication connection pins: ISO dates, UTC, hex bytea, `extra_float_digits=1`).
pub fn parse_text(ty: &TypeInfo, text: &str) -> Result<Value, ValueError> {
    parse(ty, text).map_err(|why| ValueError {
        type_oid: ty.oid,
        text: text.to_owned(),
        why,
    })
}

/// `parse_text` with a bare reason, so arrays can say which element failed.
fn parse(ty: &TypeInfo, text: &str) -> Result<Value, String> {
    match &ty.kind {
        TypeKind::Scalar => parse_scalar(ty.oid, text),
        TypeKind::Enum(_) => Ok(Value::Enum(text.to_owned())),
        TypeKind::Array(elem) => parse_array(elem, text),
        TypeKind::Other => Ok(Value::Other {
            type_oid: ty.oid,
            text: text.to_owned(),
        }),
    }
}

fn parse_scalar(type_oid: u32, text: &str) -> Result<Value, String> {
    Ok(match type_oid {
        oid::BOOL => Value::Bool(parse_bool(text)?),
        oid::INT2 => Value::Int2(parse_int(text)?),
        oid::INT4 => Value::Int4(parse_int(text)?),
        oid::INT8 => Value::Int8(parse_int(text)?),
        // An oid is an unsigned 32-bit number: int8 holds every one (as Debezium maps it).
        oid::OID => Value::Int8(parse_int::<u32>(text)?.into()),
        oid::FLOAT4 => Value::Float4(parse_float(text)?),
        oid::FLOAT8 => Value::Float8(parse_float(text)?),
        oid::NUMERIC => Value::Numeric(parse_numeric(text)?),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR => {
            Value::Text(text.to_owned())
        }
        oid::BYTEA => Value::Bytea(parse_bytea(text)?),
        oid::DATE => Value::Date(parse_date(text)?),
        oid::TIME => Value::Time(parse_time(text)?),
        oid::TIMESTAMP => Value::Timestamp(parse_timestamp(text, false)?),
        oid::TIMESTAMPTZ => Value::TimestampTz(parse_timestamp(text, true)?),
        oid::UUID => Value::Uuid(parse_uuid(text)?),
        oid::JSON => Value::Json(text.to_owned()),
        oid::JSONB => Value::Jsonb(text.to_owned()),
        _ => Value::Other {
            type_oid,
            text: text.to_owned(),
        },
    })
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "t" => Ok(true),
        "f" => Ok(false),
        _ => Err("expected \"t\" or \"f\"".into()),
    }
}

fn parse_int<T: std::str::FromStr<Err = std::num::ParseIntError>>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|e| format!("not an integer of this size: {e}"))
}

/// Floats: PostgreSQL's spellings of the specials, else a plain decimal. Rust's parser would
/// also take `inf` or `nan`, which PostgreSQL never prints; refusing them catches a wrong type.
fn parse_float<T: PgFloat>(text: &str) -> Result<T, String> {
    match text {
        "NaN" => return Ok(T::NAN),
        "Infinity" => return Ok(T::INFINITY),
        "-Infinity" => return Ok(T::NEG_INFINITY),
        _ => {}
    }
    let decimal = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    match text.parse() {
        Ok(v) if decimal => Ok(v),
        _ => Err("not a floating-point number".into()),
    }
}

/// What reading and printing floats the way PostgreSQL does needs of f32 and f64.
trait PgFloat: Copy + PartialEq + std::fmt::LowerExp + std::str::FromStr {
    const NAN: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    /// Significant digits that always suffice to read a value back (FLT/DBL_DECIMAL_DIG).
    const MAX_DIGITS: usize;
    /// A positive finite value as `m × 2^e`, and whether the gap down to the next value is
    /// half the gap up (at exact powers of two, where the exponent steps).
    fn binary(self) -> (u64, i32, bool);
}

impl PgFloat for f32 {
    const NAN: Self = f32::NAN;
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const MAX_DIGITS: usize = 9;

    fn binary(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let exponent = ((bits >> 23) & 0xff) as i32;
        let fraction = u64::from(bits & 0x7f_ffff);
        match exponent {
            0 => (fraction, -149, false),
            _ => (
                fraction | 1 << 23,
                exponent - 150,
                fraction == 0 && exponent > 1,
            ),
        }
    }
}

impl PgFloat for f64 {
    const NAN: Self = f64::NAN;
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const MAX_DIGITS: usize = 17;

    fn binary(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & 0xf_ffff_ffff_ffff;
        match exponent {
            0 => (fraction, -1074, false),
            _ => (
                fraction | 1 << 52,
                exponent - 1075,
                fraction == 0 && exponent > 1,
            ),
        }
    }
}

/// Numeric keeps its text (no binary type holds every numeric); this only checks it is one.
fn parse_numeric(text: &str) -> Result<String, String> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") || is_decimal(text) {
        Ok(text.to_owned())
    } else {
        Err("not a numeric".into())
    }
}

/// `[+-]digits[.digits][e[+-]digits]`, with digits on at least one side of the point.
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| !e.is_empty() && all_digits(e));
    all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty()) && exponent_ok
}

/// bytea in hex format: `\x` then two hex digits a byte.
fn parse_bytea(text: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Err("bytea is not in hex format (is bytea_output=hex set?)".into());
    };
    decode_hex(hex.as_bytes()).ok_or_else(|| "bytea hex digits are malformed".into())
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| match pair {
            &[hi, lo] => Some((hex_digit(hi)? << 4) | hex_digit(lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonical `8-4-4-4-12` hex, or the same 32 digits without hyphens.
fn parse_uuid(text: &str) -> Result<[u8; 16], String> {
    let bytes = text.as_bytes();
    let hyphenated =
        bytes.len() == 36 && [8, 13, 18, 23].iter().all(|&i| bytes.get(i) == Some(&b'-'));
    let digits: Vec<u8> = if hyphenated {
        bytes.iter().copied().filter(|&b| b != b'-').collect()
    } else {
        bytes.to_vec()
    };
    decode_hex(&digits)
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
        .ok_or_else(|| "not a UUID".into())
}

// ---------------------------------------------------------------------------------------
// Dates and times. PostgreSQL's calendar is the proleptic Gregorian one with no year 0
// (1 BC is followed by AD 1); its range (4713 BC to 5874897 AD) is wider than chrono's,
// so the calendar math is done here on plain integers.

fn parse_date(text: &str) -> Result<DateValue, String> {
    match text {
        "infinity" => return Ok(DateValue::Infinity),
        "-infinity" => return Ok(DateValue::NegInfinity),
        _ => {}
    }
    let (body, bc) = strip_bc(text);
    let mut c = Cursor::new(body);
    let days = c.date(bc)?;
    c.end()?;
    i32::try_from(days)
        .map(DateValue::Days)
        .map_err(|_| "date out of range".into())
}

fn parse_time(text: &str) -> Result<i64, String> {
    let mut c = Cursor::new(text);
    let micros = c.time_of_day()?;
    c.end()?;
    Ok(micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, then for timestamptz a UTC offset, then ` BC` if so.
fn parse_timestamp(text: &str, with_zone: bool) -> Result<TimestampValue, String> {
    match text {
        "infinity" => return Ok(TimestampValue::Infinity),
        "-infinity" => return Ok(TimestampValue::NegInfinity),
        _ => {}
    }
    let (body, bc) = strip_bc(text);
    let mut c = Cursor::new(body);
    let days = c.date(bc)?;
    c.expect(b' ')?;
    let time = c.time_of_day()?;
    let offset = if with_zone { c.utc_offset()? } else { 0 };
    c.end()?;
    // i128: the day's start may lie outside i64 even when the instant does not.
    let micros = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(time)
        - i128::from(offset) * i128::from(MICROS_PER_SECOND);
    i64::try_from(micros)
        .map(TimestampValue::Micros)
        .map_err(|_| "timestamp out of range".into())
}

fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    }
}

/// A byte cursor for the fixed-layout date and time texts.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at position {}",
                char::from(b),
                self.pos
            ))
        }
    }

    fn end(&self) -> Result<(), String> {
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err(format!("unexpected text at position {}", self.pos))
        }
    }

    /// Between `min` and `max` decimal digits, and how many there were.
    fn digits(&mut self, min: usize, max: usize, what: &str) -> Result<(i64, usize), String> {
        let mut value: i64 = 0;
        let mut count = 0;
        while count < max {
            let Some(d) = self.peek().filter(u8::is_ascii_digit) else {
                break;
            };
            value = value * 10 + i64::from(d - b'0');
            count += 1;
            self.pos += 1;
        }
        if count < min {
            return Err(format!("expected {what} at position {}", self.pos));
        }
        Ok((value, count))
    }

    fn number(&mut self, len: usize, what: &str) -> Result<i64, String> {
        Ok(self.digits(len, len, what)?.0)
    }

    /// `YYYY-MM-DD` (the year may be longer) as days since 1970-01-01.
    fn date(&mut self, bc: bool) -> Result<i64, String> {
        // Nine digits is far beyond PostgreSQL's range and still far from overflowing i64.
        let (year, _) = self.digits(4, 9, "a year")?;
        self.expect(b'-')?;
        let month = self.number(2, "a month")?;
        self.expect(b'-')?;
        let day = self.number(2, "a day")?;
        if year == 0 {
            return Err("there is no year 0".into());
        }
        let year = if bc { 1 - year } else { year };
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err("no such date".into());
        }
        Ok(days_from_civil(year, month, day))
    }

    /// `HH:MM:SS[.f{1,6}]` as microseconds since midnight; `24:00:00` is valid, as in PostgreSQL.
    fn time_of_day(&mut self) -> Result<i64, String> {
        let hour = self.number(2, "an hour")?;
        self.expect(b':')?;
        let minute = self.number(2, "minutes")?;
        self.expect(b':')?;
        let second = self.number(2, "seconds")?;
        let mut fraction = 0;
        if self.eat(b'.') {
            let (value, count) = self.digits(1, 6, "fractional seconds")?;
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err("more than 6 fractional digits".into());
            }
            fraction = value * 10_i64.pow(6 - count as u32);
        }
        let micros = ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction;
        if minute > 59 || second > 59 || micros > MICROS_PER_DAY {
            return Err("no such time of day".into());
        }
        Ok(micros)
    }

    /// `+HH`, `-HH:MM` or `+HH:MM:SS` as seconds east of UTC.
    fn utc_offset(&mut self) -> Result<i64, String> {
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(format!("expected a UTC offset at position {}", self.pos)),
        };
        self.pos += 1;
        let hours = self.number(2, "offset hours")?;
        let minutes = if self.eat(b':') {
            self.number(2, "offset minutes")?
        } else {
            0
        };
        let seconds = if self.eat(b':') {
            self.number(2, "offset seconds")?
        } else {
            0
        };
        if minutes > 59 || seconds > 59 {
            return Err("no such UTC offset".into());
        }
        Ok(sign * ((hours * 60 + minutes) * 60 + seconds))
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date with astronomical year numbering
/// (year 0 is 1 BC). Howard Hinnant's `days_from_civil`: eras of 400 years, March-based years.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------
// Arrays: `{a,b}`, `{{1,2},{3,4}}`, `{"quoted \"x\"",NULL}`, `[0:1]={1,2}`.

fn parse_array(elem: &TypeInfo, text: &str) -> Result<Value, String> {
    let body = skip_dimensions(text)?;
    let mut p = ArrayParser {
        s: body.as_bytes(),
        pos: 0,
        elem,
        delimiter: delimiter_of(elem.oid),
    };
    p.skip_whitespace();
    let value = p.array(1)?;
    p.skip_whitespace();
    if p.pos != p.s.len() {
        return Err(format!(
            "unexpected text after the array at position {}",
            p.pos
        ));
    }
    Ok(value)
}

/// `box` is the one built-in type whose arrays are delimited by `;` (its text has commas).
fn delimiter_of(elem_oid: u32) -> u8 {
    if elem_oid == oid::BOX {
        b';'
    } else {
        b','
    }
}

/// Drops the `[lower:upper]...=` prefix PostgreSQL writes when a lower bound is not 1: the
/// bounds are not part of the value this decoder keeps.
fn skip_dimensions(text: &str) -> Result<&str, String> {
    if !text.starts_with('[') {
        return Ok(text);
    }
    let Some((bounds, rest)) = text.split_once('=') else {
        return Err("array dimensions are not followed by '='".into());
    };
    let well_formed = bounds
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'[' | b']' | b':' | b'-' | b'+'));
    if well_formed && bounds.ends_with(']') {
        Ok(rest)
    } else {
        Err("malformed array dimensions".into())
    }
}

struct ArrayParser<'a> {
    s: &'a [u8],
    pos: usize,
    elem: &'a TypeInfo,
    delimiter: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.pos += 1;
        }
    }

    /// One `{...}` level; its items are either all sub-arrays or all elements.
    fn array(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_ARRAY_DIMENSIONS {
            return Err(format!("more than {MAX_ARRAY_DIMENSIONS} array dimensions"));
        }
        if self.next() != Some(b'{') {
            return Err(format!(
                "expected '{{' at position {}",
                self.pos.saturating_sub(1)
            ));
        }
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        let mut nested = None;
        loop {
            self.skip_whitespace();
            let is_sub_array = self.peek() == Some(b'{');
            if *nested.get_or_insert(is_sub_array) != is_sub_array {
                return Err(format!(
                    "array mixes sub-arrays and elements at position {}",
                    self.pos
                ));
            }
            items.push(if is_sub_array {
                Some(self.array(depth + 1)?)
            } else {
                self.element()?
            });
            self.skip_whitespace();
            match self.next() {
                Some(b'}') => return Ok(Value::Array(items)),
                Some(b) if b == self.delimiter => {}
                Some(b) => {
                    return Err(format!(
                        "unexpected {:?} at position {}",
                        char::from(b),
                        self.pos - 1
                    ))
                }
                None => return Err("array is not closed".into()),
            }
        }
    }

    /// One element; `None` for an unquoted, unescaped NULL.
    fn element(&mut self) -> Result<Option<Value>, String> {
        let (text, literal) = if self.peek() == Some(b'"') {
            (self.quoted()?, true)
        } else {
            self.unquoted()?
        };
        if !literal && text.eq_ignore_ascii_case("NULL") {
            return Ok(None);
        }
        parse(self.elem, &text)
            .map(Some)
            .map_err(|why| format!("element {text:?}: {why}"))
    }

    fn quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => out.push(self.next().ok_or("array ends inside an escape")?),
                Some(b) => out.push(b),
                None => return Err("quoted array element is not closed".into()),
            }
        }
        into_string(out)
    }

    /// An unquoted element up to the delimiter or `}`, surrounding whitespace dropped, and
    /// whether a backslash made part of it literal (then `NULL` is just text).
    fn unquoted(&mut self) -> Result<(String, bool), String> {
        let mut out = Vec::new();
        let mut escaped = false;
        // Whitespace after the last escaped byte is kept: only unescaped trailing space trims.
        let mut keep = 0;
        loop {
            match self.peek() {
                None => return Err("array is not closed".into()),
                Some(b) if b == self.delimiter || b == b'}' => break,
                Some(b'"' | b'{') => {
                    return Err(format!(
                        "unexpected quote or brace at position {}",
                        self.pos
                    ))
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.next().ok_or("array ends inside an escape")?);
                    escaped = true;
                    keep = out.len();
                }
                Some(b) => {
                    self.pos += 1;
                    out.push(b);
                    if !is_array_space(b) {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        if out.is_empty() && !escaped {
            return Err(format!("empty array element at position {}", self.pos));
        }
        Ok((into_string(out)?, escaped))
    }
}

/// PostgreSQL's `array_isspace`: ASCII whitespace, locale-independent.
fn is_array_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Bytes cut from a `&str` at ASCII boundaries are still UTF-8; this never fails in practice.
fn into_string(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "array element is not UTF-8".into())
}

// ---------------------------------------------------------------------------------------
// Output: PostgreSQL's own text, and JSON.

impl Value {
    /// The JSON form the outputs write: numbers stay numbers where JSON can hold them exactly,
    /// everything else is PostgreSQL's text.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match self {
            Value::Bool(b) => Json::Bool(*b),
            Value::Int2(v) => Json::from(*v),
            Value::Int4(v) => Json::from(*v),
            Value::Int8(v) => Json::from(*v),
            Value::Float4(v) => float_json(float4_as_f64(*v)),
            Value::Float8(v) => float_json(*v),
            Value::Json(text) | Value::Jsonb(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
            }
            Value::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|item| item.as_ref().map_or(Json::Null, Value::to_json))
                    .collect(),
            ),
            _ => Json::String(self.to_pg_text()),
        }
    }

    /// The text PostgreSQL itself prints for this value under the replication session's
    /// settings; `parse_text` of it gives the value back.
    pub fn to_pg_text(&self) -> String {
        match self {
            Value::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
            Value::Int2(v) => v.to_string(),
            Value::Int4(v) => v.to_string(),
            Value::Int8(v) => v.to_string(),
            Value::Float4(v) => float4_text(*v),
            Value::Float8(v) => float8_text(*v),
            Value::Numeric(text)
            | Value::Text(text)
            | Value::Json(text)
            | Value::Jsonb(text)
            | Value::Enum(text)
            | Value::Other { text, .. } => text.clone(),
            Value::Bytea(bytes) => bytea_text(bytes),
            Value::Date(date) => date_text(*date),
            Value::Time(micros) => {
                let mut out = String::new();
                push_time(&mut out, *micros);
                out
            }
            Value::Timestamp(ts) => timestamp_text(*ts, false),
            Value::TimestampTz(ts) => timestamp_text(*ts, true),
            Value::Uuid(bytes) => uuid_text(bytes),
            Value::Array(items) => {
                let mut out = String::new();
                push_array(&mut out, items);
                out
            }
        }
    }
}

/// JSON has no NaN or infinities: those become PostgreSQL's spellings, as strings.
fn float_json(v: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(v) {
        Some(n) => serde_json::Value::Number(n),
        None => serde_json::Value::String(float8_text(v)),
    }
}

/// float8 as PostgreSQL prints it with `extra_float_digits > 0`: shortest digits, in
/// exponent form when the decimal exponent is below -4 or at least 15 (DBL_DIG).
fn float8_text(v: f64) -> String {
    match float_special(v.is_nan(), v.is_infinite(), v == 0.0, v.is_sign_negative()) {
        Some(text) => text.to_owned(),
        None => pg_shortest(v.abs()).to_pg_text(v.is_sign_negative(), 15),
    }
}

/// float4 likewise, with float4's own shortest digits and FLT_DIG (6) as the threshold.
fn float4_text(v: f32) -> String {
    match float_special(v.is_nan(), v.is_infinite(), v == 0.0, v.is_sign_negative()) {
        Some(text) => text.to_owned(),
        None => pg_shortest(v.abs()).to_pg_text(v.is_sign_negative(), 6),
    }
}

/// The f64 nearest the digits PostgreSQL prints for a float4: 1.1f32 becomes 1.1, not
/// 1.100000023841858.
fn float4_as_f64(v: f32) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return f64::from(v);
    }
    let magnitude = pg_shortest(v.abs()).to_f64().unwrap_or(f64::from(v.abs()));
    if v.is_sign_negative() {
        -magnitude
    } else {
        magnitude
    }
}

fn float_special(nan: bool, infinite: bool, zero: bool, negative: bool) -> Option<&'static str> {
    match (nan, infinite, zero, negative) {
        (true, ..) => Some("NaN"),
        (_, true, _, false) => Some("Infinity"),
        (_, true, _, true) => Some("-Infinity"),
        (_, _, true, false) => Some("0"),
        (_, _, true, true) => Some("-0"),
        _ => None,
    }
}

/// The digits PostgreSQL's Ryu port prints for a positive finite `v`: the fewest digits of
/// any decimal strictly inside `v`'s rounding interval, and of those the nearest to `v`
/// (half to even). Unlike upstream Ryu and Rust's `{:e}`, PostgreSQL never picks a decimal
/// lying exactly on the interval's edge (its STRICTLY_SHORTEST is off), so 40531232f32
/// prints as 4.0531232e+07, not 4.053123e+07. Rust's formatter supplies exactly rounded
/// digits at each length; the edge test is exact integer arithmetic.
fn pg_shortest<T: PgFloat>(v: T) -> Decimal {
    let rust_shortest = Decimal::from_sci(&format!("{v:e}"));
    let start = rust_shortest.as_ref().map_or(1, |d| d.digits.len());
    for len in start..=T::MAX_DIGITS {
        let Some(nearest) = Decimal::from_sci(&format!("{:.*e}", len - 1, v)) else {
            break;
        };
        // Where the nearest is out, the interval is lopsided (a power of two's short lower
        // side) and the next decimal up is the one left.
        let up = nearest.next_up();
        for candidate in [nearest, up] {
            if candidate.strictly_rounds_to(v) {
                return candidate.trimmed();
            }
        }
    }
    // Unreachable: MAX_DIGITS digits always land strictly inside. Rust's shortest is then
    // the closest thing.
    rust_shortest.unwrap_or(Decimal {
        digits: b"0".to_vec(),
        exp: 0,
    })
}

/// A positive decimal: significant digits (ASCII) and the power of ten of the first.
#[derive(Debug)]
struct Decimal {
    digits: Vec<u8>,
    exp: i32,
}

impl Decimal {
    /// From Rust's `{:e}` form, `d.ddde-7`.
    fn from_sci(s: &str) -> Option<Decimal> {
        let (mantissa, exp) = s.split_once('e')?;
        let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        (!digits.is_empty()).then_some(Decimal {
            digits,
            exp: exp.parse().ok()?,
        })
    }

    /// The decimal one unit in the last digit above, with as many digits.
    fn next_up(&self) -> Decimal {
        let mut digits = self.digits.clone();
        for d in digits.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                return Decimal {
                    digits,
                    exp: self.exp,
                };
            }
        }
        // All nines carried out: 9.99e5 + 0.01e5 = 1.00e6.
        digits.insert(0, b'1');
        digits.pop();
        Decimal {
            digits,
            exp: self.exp + 1,
        }
    }

    fn trimmed(mut self) -> Decimal {
        while self.digits.len() > 1 && self.digits.last() == Some(&b'0') {
            self.digits.pop();
        }
        self
    }

    /// The value as `integer × 10^k`.
    fn integer(&self) -> Option<(u128, i32)> {
        let integer = std::str::from_utf8(&self.digits).ok()?.parse().ok()?;
        let k = self.exp - i32::try_from(self.digits.len()).ok()? + 1;
        Some((integer, k))
    }

    fn to_f64(&self) -> Option<f64> {
        let (integer, k) = self.integer()?;
        format!("{integer}e{k}").parse().ok()
    }

    /// Reads back as `v` and is not exactly halfway to a neighbour of `v`.
    fn strictly_rounds_to<T: PgFloat>(&self, v: T) -> bool {
        let Some((integer, k)) = self.integer() else {
            return false;
        };
        if format!("{integer}e{k}").parse::<T>().ok() != Some(v) {
            return false;
        }
        let (m, e, lower_gap_halved) = v.binary();
        let m = u128::from(m);
        let upper_edge = (2 * m + 1, e - 1);
        let lower_edge = if lower_gap_halved {
            (4 * m - 1, e - 2)
        } else {
            (2 * m - 1, e - 1)
        };
        ![upper_edge, lower_edge]
            .into_iter()
            .any(|(odd, p)| decimal_equals_binary(integer, k, odd, p))
    }

    /// PostgreSQL's layout: fixed point for exponents in `-4..exponent_from`, else
    /// `d.ddde+XX` with at least two exponent digits.
    fn to_pg_text(&self, negative: bool, exponent_from: i32) -> String {
        let digits = String::from_utf8_lossy(&self.digits);
        let mut out = String::with_capacity(digits.len() + 8);
        if negative {
            out.push('-');
        }
        if (-4..exponent_from).contains(&self.exp) {
            push_fixed(&mut out, &digits, self.exp);
        } else {
            let (first, rest) = digits.split_at(1.min(digits.len()));
            out.push_str(first);
            if !rest.is_empty() {
                out.push('.');
                out.push_str(rest);
            }
            let sign = if self.exp < 0 { '-' } else { '+' };
            out.push_str(&format!("e{sign}{:02}", self.exp.unsigned_abs()));
        }
        out
    }
}

/// Whether `d × 10^k == odd × 2^p` exactly, `odd` being odd: the powers of two and the odd
/// parts (`d`'s odd part times or over 5^k) must match separately.
fn decimal_equals_binary(d: u128, k: i32, odd: u128, p: i32) -> bool {
    if d == 0 {
        return false;
    }
    let twos = d.trailing_zeros();
    let d_odd = d >> twos;
    if i64::from(twos) + i64::from(k) != i64::from(p) {
        return false;
    }
    let five_pow = 5u128.checked_pow(k.unsigned_abs());
    if k >= 0 {
        five_pow.and_then(|f| d_odd.checked_mul(f)) == Some(odd)
    } else {
        five_pow.and_then(|f| odd.checked_mul(f)) == Some(d_odd)
    }
}

/// `digits` (d₀d₁d₂…, meaning d₀.d₁d₂… × 10^exp) in positional notation.
fn push_fixed(out: &mut String, digits: &str, exp: i32) {
    match usize::try_from(exp) {
        Err(_) => {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', exp.unsigned_abs() as usize - 1));
            out.push_str(digits);
        }
        Ok(int_len) if digits.len() <= int_len + 1 => {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', int_len + 1 - digits.len()));
        }
        Ok(int_len) => {
            let (int, frac) = digits.split_at(int_len + 1);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    }
}

fn bytea_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut out = bytea_text(bytes).split_off(2);
    for at in [20, 16, 12, 8] {
        out.insert(at, '-');
    }
    out
}

fn date_text(date: DateValue) -> String {
    match date {
        DateValue::Infinity => "infinity".into(),
        DateValue::NegInfinity => "-infinity".into(),
        DateValue::Days(days) => {
            let mut out = String::new();
            if push_date(&mut out, i64::from(days)) {
                out.push_str(" BC");
            }
            out
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+00][ BC]`: the era comes after the zone, as in PostgreSQL.
fn timestamp_text(ts: TimestampValue, with_zone: bool) -> String {
    let micros = match ts {
        TimestampValue::Infinity => return "infinity".into(),
        TimestampValue::NegInfinity => return "-infinity".into(),
        TimestampValue::Micros(micros) => micros,
    };
    let mut out = String::new();
    let bc = push_date(&mut out, micros.div_euclid(MICROS_PER_DAY));
    out.push(' ');
    push_time(&mut out, micros.rem_euclid(MICROS_PER_DAY));
    if with_zone {
        // TimeZone=UTC: PostgreSQL prints the zero offset as bare hours.
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Writes `YYYY-MM-DD` (years zero-padded to four digits, counted back from 1 BC) and
/// returns whether the date is BC.
fn push_date(out: &mut String, days: i64) -> bool {
    let (year, month, day) = civil_from_days(days);
    let bc = year <= 0;
    let shown_year = if bc { 1 - year } else { year };
    out.push_str(&format!("{shown_year:04}-{month:02}-{day:02}"));
    bc
}

/// `HH:MM:SS` then the fraction with trailing zeros trimmed, as PostgreSQL's AppendSeconds.
fn push_time(out: &mut String, micros: i64) {
    if micros < 0 {
        out.push('-');
    }
    let micros = micros.unsigned_abs();
    let (seconds, fraction) = (micros / 1_000_000, micros % 1_000_000);
    out.push_str(&format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    ));
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// PostgreSQL's `array_out`: NULL for SQL NULL, elements quoted when they would otherwise
/// read back differently.
fn push_array(out: &mut String, items: &[Option<Value>]) {
    let delimiter = array_delimiter(items);
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        match item {
            None => out.push_str("NULL"),
            Some(Value::Array(inner)) => push_array(out, inner),
            Some(value) => push_element(out, &value.to_pg_text(), delimiter),
        }
    }
    out.push('}');
}

/// `;` for arrays of `box`, whose text contains commas; `,` for everything else.
fn array_delimiter(items: &[Option<Value>]) -> char {
    let first = items.iter().flatten().next();
    match first {
        Some(Value::Other {
            type_oid: oid::BOX, ..
        }) => ';',
        Some(Value::Array(inner)) => array_delimiter(inner),
        _ => ',',
    }
}

fn push_element(out: &mut String, text: &str, delimiter: char) {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .bytes()
            .any(|b| matches!(b, b'{' | b'}' | b'"' | b'\\') || is_array_space(b))
        || text.contains(delimiter);
    if !needs_quotes {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
