//! PostgreSQL text-format values → typed [`Value`]s, and back out as JSON.

use crate::change::{DateValue, TimestampValue, Value};

/// What the decoder needs to know of a column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub oid: u32,
    pub kind: TypeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// A built-in scalar type, decoded by OID.
    Scalar,
    /// A user-defined enum: the text is the label.
    Enum,
    /// An array of the element type (typdelim `,` for every type this decodes).
    Array(Box<TypeInfo>),
    /// Anything else: kept as text.
    Other,
}

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
        TypeKind::Enum => Ok(Value::Enum(text.to_owned())),
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
    if hex.len() % 2 != 0 {
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
    /// The JSON form sinks write: numbers stay numbers where JSON can hold them exactly,
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
mod tests {
    use chrono::{Datelike, NaiveDate, TimeDelta};
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn scalar(oid: u32) -> TypeInfo {
        TypeInfo {
            oid,
            kind: TypeKind::Scalar,
        }
    }

    fn array_of(elem: TypeInfo) -> TypeInfo {
        // The array type's own OID does not matter to decoding.
        TypeInfo {
            oid: 1007,
            kind: TypeKind::Array(Box::new(elem)),
        }
    }

    fn parse_ok(oid: u32, text: &str) -> Value {
        parse_text(&scalar(oid), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(ty: &TypeInfo, text: &str) -> ValueError {
        match parse_text(ty, text) {
            Ok(v) => panic!("{text:?} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    /// Parses, checks the value, and checks PostgreSQL's text comes back unchanged.
    fn round_trip(ty: &TypeInfo, text: &str, expected: Value) {
        let value = parse_text(ty, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{value:?}"),
            format!("{expected:?}"),
            "parsing {text:?}"
        );
        assert_eq!(value.to_pg_text(), text);
    }

    fn json(v: &Value) -> String {
        v.to_json().to_string()
    }

    fn days(y: i32, m: u32, d: u32) -> i32 {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        (date - epoch).num_days() as i32
    }

    fn micros(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> i64 {
        let t = NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap();
        t.and_utc().timestamp_micros()
    }

    #[test]
    fn booleans() {
        round_trip(&scalar(oid::BOOL), "t", Value::Bool(true));
        round_trip(&scalar(oid::BOOL), "f", Value::Bool(false));
        parse_err(&scalar(oid::BOOL), "true");
        assert_eq!(json(&Value::Bool(true)), "true");
    }

    #[test]
    fn integers_at_their_limits() {
        round_trip(&scalar(oid::INT2), "-32768", Value::Int2(i16::MIN));
        round_trip(&scalar(oid::INT2), "32767", Value::Int2(i16::MAX));
        parse_err(&scalar(oid::INT2), "32768");
        round_trip(&scalar(oid::INT4), "-2147483648", Value::Int4(i32::MIN));
        round_trip(
            &scalar(oid::INT8),
            "-9223372036854775808",
            Value::Int8(i64::MIN),
        );
        round_trip(
            &scalar(oid::INT8),
            "9223372036854775807",
            Value::Int8(i64::MAX),
        );
        parse_err(&scalar(oid::INT8), "9223372036854775808");
        parse_err(&scalar(oid::INT4), "");
        parse_err(&scalar(oid::INT4), "1.0");
        round_trip(
            &scalar(oid::OID),
            "4294967295",
            Value::Int8(u32::MAX.into()),
        );
        parse_err(&scalar(oid::OID), "-1");
        assert_eq!(json(&Value::Int8(i64::MIN)), "-9223372036854775808");
        assert_eq!(json(&Value::Int2(-5)), "-5");
    }

    #[test]
    fn float8_text_matches_postgresql() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (100.0, "100"),
            (123.456, "123.456"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e14, "100000000000000"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1e+15"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (1e-300, "1e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for &(v, text) in cases {
            round_trip(&scalar(oid::FLOAT8), text, Value::Float8(v));
        }
        // PostgreSQL accepts input it never prints; so do we, as long as it is a number.
        assert_eq!(parse_ok(oid::FLOAT8, "1e-7"), Value::Float8(1e-7));
        parse_err(&scalar(oid::FLOAT8), "inf");
        parse_err(&scalar(oid::FLOAT8), "nan");
        parse_err(&scalar(oid::FLOAT8), "");
        parse_err(&scalar(oid::FLOAT8), "1,5");
    }

    #[test]
    // The tie cases below are exact binary values on purpose.
    #[allow(clippy::excessive_precision)]
    fn float4_text_matches_postgresql() {
        let cases: &[(f32, &str)] = &[
            (1.1, "1.1"),
            (-0.0, "-0"),
            (100000.0, "100000"),
            (123456.0, "123456"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (16777216.0, "1.6777216e+07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (f32::MAX, "3.4028235e+38"),
            (f32::MIN_POSITIVE, "1.1754944e-38"),
            (1e-45, "1e-45"),
            // An exact tie between two shortest forms: PostgreSQL rounds half to even.
            (2674375.25, "2.6743752e+06"),
            (-2674375.75, "-2.6743758e+06"),
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
        ];
        for &(v, text) in cases {
            round_trip(&scalar(oid::FLOAT4), text, Value::Float4(v));
        }
    }

    #[test]
    fn floats_as_json() {
        assert_eq!(json(&Value::Float4(1.1)), "1.1");
        assert_eq!(
            Value::Float4(f32::MAX).to_json().as_f64(),
            Some(3.4028235e38)
        );
        assert_eq!(Value::Float4(2674375.2).to_json().as_f64(), Some(2674375.2));
        assert_eq!(json(&Value::Float4(0.1)), "0.1");
        assert_eq!(json(&Value::Float8(1e-300)), "1e-300");
        assert_eq!(json(&Value::Float8(2.5)), "2.5");
        assert_eq!(json(&Value::Float8(f64::NAN)), "\"NaN\"");
        assert_eq!(json(&Value::Float8(f64::INFINITY)), "\"Infinity\"");
        assert_eq!(json(&Value::Float4(f32::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(json(&Value::Float4(f32::NAN)), "\"NaN\"");
    }

    #[test]
    fn numerics_keep_their_exact_text() {
        let hundred_digits = format!("-{}.{}", "9".repeat(60), "1".repeat(40));
        for text in [
            "0",
            "-1.50",
            "0.000000000000000000001",
            "NaN",
            "Infinity",
            "-Infinity",
            &hundred_digits,
        ] {
            round_trip(&scalar(oid::NUMERIC), text, Value::Numeric(text.into()));
            assert_eq!(json(&Value::Numeric(text.into())), format!("\"{text}\""));
        }
        for text in ["1e5", "+1", ".5", "5."] {
            assert_eq!(parse_ok(oid::NUMERIC, text), Value::Numeric(text.into()));
        }
        for text in ["", "abc", "1.2.3", "--1", ".", "e5", "1e", "nan", "1 "] {
            parse_err(&scalar(oid::NUMERIC), text);
        }
    }

    #[test]
    fn text_types() {
        for ty in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME, oid::CHAR] {
            for text in ["", "héllo ✓ 😀", "padded   ", "NULL", "line\nbreak"] {
                round_trip(&scalar(ty), text, Value::Text(text.into()));
            }
        }
        assert_eq!(json(&Value::Text("ünï \"q\"".into())), r#""ünï \"q\"""#);
    }

    #[test]
    fn bytea_hex() {
        round_trip(&scalar(oid::BYTEA), "\\x", Value::Bytea(vec![]));
        round_trip(
            &scalar(oid::BYTEA),
            "\\x00ff10",
            Value::Bytea(vec![0, 255, 16]),
        );
        assert_eq!(
            parse_ok(oid::BYTEA, "\\xABcd"),
            Value::Bytea(vec![0xab, 0xcd])
        );
        for text in ["\\x0", "\\xzz", "abc", "\\001"] {
            parse_err(&scalar(oid::BYTEA), text);
        }
        assert_eq!(json(&Value::Bytea(vec![0xde, 0xad])), r#""\\xdead""#);
    }

    #[test]
    fn dates() {
        let ty = scalar(oid::DATE);
        round_trip(&ty, "1970-01-01", Value::Date(DateValue::Days(0)));
        round_trip(
            &ty,
            "2026-01-02",
            Value::Date(DateValue::Days(days(2026, 1, 2))),
        );
        round_trip(&ty, "1969-12-31", Value::Date(DateValue::Days(-1)));
        round_trip(
            &ty,
            "2024-02-29",
            Value::Date(DateValue::Days(days(2024, 2, 29))),
        );
        round_trip(&ty, "infinity", Value::Date(DateValue::Infinity));
        round_trip(&ty, "-infinity", Value::Date(DateValue::NegInfinity));
        // 44 BC is astronomical year -43; 1 BC is year 0.
        round_trip(
            &ty,
            "0044-03-15 BC",
            Value::Date(DateValue::Days(days(-43, 3, 15))),
        );
        round_trip(
            &ty,
            "0001-12-31 BC",
            Value::Date(DateValue::Days(days(0, 12, 31))),
        );
        round_trip(
            &ty,
            "0001-01-01",
            Value::Date(DateValue::Days(days(1, 1, 1))),
        );
        // PostgreSQL's whole range, wider than chrono's.
        round_trip(
            &ty,
            "4714-11-24 BC",
            Value::Date(DateValue::Days(days(-4713, 11, 24))),
        );
        assert_eq!(days(-4713, 11, 24), -2_440_588, "Julian day 0");
        round_trip(
            &ty,
            "5874897-12-31",
            Value::Date(DateValue::Days(2_145_031_948 + 10_957)),
        );
        for text in [
            "2023-02-29",
            "2023-13-01",
            "2023-00-10",
            "0000-01-01",
            "2023-1-01",
            "23-01-01",
            "2023-01-01 ",
            "today",
        ] {
            parse_err(&ty, text);
        }
        assert_eq!(
            json(&Value::Date(DateValue::Days(days(-43, 3, 15)))),
            "\"0044-03-15 BC\""
        );
        assert_eq!(json(&Value::Date(DateValue::Infinity)), "\"infinity\"");
    }

    #[test]
    fn times_of_day() {
        let ty = scalar(oid::TIME);
        round_trip(&ty, "00:00:00", Value::Time(0));
        round_trip(&ty, "03:04:05", Value::Time(11_045_000_000));
        round_trip(&ty, "03:04:05.5", Value::Time(11_045_500_000));
        round_trip(&ty, "03:04:05.000001", Value::Time(11_045_000_001));
        round_trip(&ty, "23:59:59.999999", Value::Time(MICROS_PER_DAY - 1));
        round_trip(&ty, "24:00:00", Value::Time(MICROS_PER_DAY));
        assert_eq!(
            parse_ok(oid::TIME, "03:04:05.500"),
            Value::Time(11_045_500_000)
        );
        for text in [
            "24:00:01",
            "12:60:00",
            "12:00:60",
            "03:04:05.1234567",
            "3:04:05",
            "03:04",
            "03:04:05.",
        ] {
            parse_err(&ty, text);
        }
        assert_eq!(json(&Value::Time(11_045_500_000)), "\"03:04:05.5\"");
    }

    #[test]
    fn timestamps() {
        let ty = scalar(oid::TIMESTAMP);
        round_trip(
            &ty,
            "1970-01-01 00:00:00",
            Value::Timestamp(TimestampValue::Micros(0)),
        );
        round_trip(
            &ty,
            "2026-01-02 03:04:05.123456",
            Value::Timestamp(TimestampValue::Micros(micros(2026, 1, 2, 3, 4, 5, 123_456))),
        );
        round_trip(
            &ty,
            "1969-12-31 23:59:59.9",
            Value::Timestamp(TimestampValue::Micros(-100_000)),
        );
        round_trip(
            &ty,
            "0044-03-15 12:00:00 BC",
            Value::Timestamp(TimestampValue::Micros(micros(-43, 3, 15, 12, 0, 0, 0))),
        );
        round_trip(&ty, "infinity", Value::Timestamp(TimestampValue::Infinity));
        round_trip(
            &ty,
            "-infinity",
            Value::Timestamp(TimestampValue::NegInfinity),
        );
        // PostgreSQL's lower limit fits; its upper one (294276 AD) lies past what i64
        // microseconds since 1970 can hold, so the last 29 years of its range are refused.
        round_trip(
            &ty,
            "4714-11-24 00:00:00 BC",
            Value::Timestamp(TimestampValue::Micros(micros(-4713, 11, 24, 0, 0, 0, 0))),
        );
        round_trip(
            &ty,
            "294247-01-10 04:00:54.775807",
            Value::Timestamp(TimestampValue::Micros(i64::MAX)),
        );
        parse_err(&ty, "294247-01-10 04:00:54.775808");
        parse_err(&ty, "294276-12-31 23:59:59.999999");
        for text in [
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-01-02 03:04:05+00",
            "2026-01-02 25:00:00",
            "999999999-01-01 00:00:00",
        ] {
            parse_err(&ty, text);
        }
        assert_eq!(
            json(&Value::Timestamp(TimestampValue::Micros(micros(
                2026, 1, 2, 3, 4, 5, 123_456
            )))),
            "\"2026-01-02 03:04:05.123456\""
        );
        // Every i64 prints and reads back, even beyond PostgreSQL's range.
        for v in [i64::MIN, i64::MAX, -1] {
            let value = Value::Timestamp(TimestampValue::Micros(v));
            assert_eq!(parse_text(&ty, &value.to_pg_text()), Ok(value));
        }
    }

    #[test]
    fn timestamps_with_time_zone() {
        let ty = scalar(oid::TIMESTAMPTZ);
        let utc = micros(2026, 1, 2, 3, 4, 5, 123_456);
        round_trip(
            &ty,
            "2026-01-02 03:04:05.123456+00",
            Value::TimestampTz(TimestampValue::Micros(utc)),
        );
        round_trip(
            &ty,
            "infinity",
            Value::TimestampTz(TimestampValue::Infinity),
        );
        // Other offsets convert to UTC, which is what PostgreSQL prints under TimeZone=UTC.
        let cases = [
            (
                "2026-01-02 05:30:00+05:30",
                micros(2026, 1, 2, 0, 0, 0, 0),
                "2026-01-02 00:00:00+00",
            ),
            (
                "2026-01-01 20:00:00-08",
                micros(2026, 1, 2, 4, 0, 0, 0),
                "2026-01-02 04:00:00+00",
            ),
            (
                "1850-01-01 00:00:00+00:53:28",
                micros(1849, 12, 31, 23, 6, 32, 0),
                "1849-12-31 23:06:32+00",
            ),
            (
                "0001-01-01 00:30:00+01 BC",
                micros(-1, 12, 31, 23, 30, 0, 0),
                "0002-12-31 23:30:00+00 BC",
            ),
        ];
        for (text, expected, printed) in cases {
            let value = parse_ok(oid::TIMESTAMPTZ, text);
            assert_eq!(
                value,
                Value::TimestampTz(TimestampValue::Micros(expected)),
                "{text}"
            );
            assert_eq!(value.to_pg_text(), printed);
        }
        round_trip(
            &ty,
            "0044-03-15 12:00:00+00 BC",
            Value::TimestampTz(TimestampValue::Micros(micros(-43, 3, 15, 12, 0, 0, 0))),
        );
        for text in [
            "2026-01-02 03:04:05",
            "2026-01-02 03:04:05 UTC",
            "2026-01-02 03:04:05+5",
            "2026-01-02 03:04:05+05:60",
            "2026-01-02 03:04:05 BC+00",
        ] {
            parse_err(&ty, text);
        }
        assert_eq!(
            json(&Value::TimestampTz(TimestampValue::Micros(utc))),
            "\"2026-01-02 03:04:05.123456+00\""
        );
    }

    #[test]
    fn uuids() {
        let bytes = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        round_trip(
            &scalar(oid::UUID),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            Value::Uuid(bytes),
        );
        assert_eq!(
            parse_ok(oid::UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            Value::Uuid(bytes)
        );
        assert_eq!(
            parse_ok(oid::UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            Value::Uuid(bytes)
        );
        for text in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "a0eebc99+9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            parse_err(&scalar(oid::UUID), text);
        }
        assert_eq!(
            json(&Value::Uuid(bytes)),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
    }

    #[test]
    fn json_and_jsonb() {
        round_trip(
            &scalar(oid::JSON),
            "{\"a\":  [1, 2]}",
            Value::Json("{\"a\":  [1, 2]}".into()),
        );
        round_trip(
            &scalar(oid::JSONB),
            "{\"a\": [1, 2]}",
            Value::Jsonb("{\"a\": [1, 2]}".into()),
        );
        assert_eq!(
            json(&Value::Jsonb("{\"a\": [1, 2], \"b\": null}".into())),
            r#"{"a":[1,2],"b":null}"#
        );
        assert_eq!(json(&Value::Json("\"s\"".into())), r#""s""#);
        // Not JSON (cannot come from PostgreSQL, but must not be lost): the text itself.
        assert_eq!(json(&Value::Json("{oops".into())), r#""{oops""#);
    }

    #[test]
    fn enums_and_other_types() {
        let mood = TypeInfo {
            oid: 16400,
            kind: TypeKind::Enum,
        };
        round_trip(&mood, "happy", Value::Enum("happy".into()));
        round_trip(&mood, "", Value::Enum(String::new()));
        let interval = TypeInfo {
            oid: 1186,
            kind: TypeKind::Other,
        };
        round_trip(
            &interval,
            "1 day 02:00:00",
            Value::Other {
                type_oid: 1186,
                text: "1 day 02:00:00".into(),
            },
        );
        // A scalar this module has no variant for keeps its text.
        round_trip(
            &scalar(869),
            "192.168.0.1/24",
            Value::Other {
                type_oid: 869,
                text: "192.168.0.1/24".into(),
            },
        );
        assert_eq!(json(&Value::Enum("sad".into())), "\"sad\"");
        assert_eq!(
            json(&Value::Other {
                type_oid: 1186,
                text: "1 day".into()
            }),
            "\"1 day\""
        );
    }

    fn int4s(items: &[Option<i32>]) -> Value {
        Value::Array(items.iter().map(|i| i.map(Value::Int4)).collect())
    }

    fn texts(items: &[Option<&str>]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|i| i.map(|s| Value::Text(s.into())))
                .collect(),
        )
    }

    #[test]
    fn arrays_of_scalars() {
        let ints = array_of(scalar(oid::INT4));
        round_trip(&ints, "{1,2,NULL}", int4s(&[Some(1), Some(2), None]));
        round_trip(&ints, "{}", Value::Array(vec![]));
        round_trip(&ints, "{NULL}", int4s(&[None]));
        let strs = array_of(scalar(oid::TEXT));
        round_trip(
            &strs,
            r#"{"a b","c\"d",NULL,"NULL","",plain,"back\\slash","x,y","{z}",ünï}"#,
            texts(&[
                Some("a b"),
                Some("c\"d"),
                None,
                Some("NULL"),
                Some(""),
                Some("plain"),
                Some("back\\slash"),
                Some("x,y"),
                Some("{z}"),
                Some("ünï"),
            ]),
        );
        round_trip(
            &strs,
            "{\"null\",\"tab\t\"}",
            texts(&[Some("null"), Some("tab\t")]),
        );
        let floats = array_of(scalar(oid::FLOAT8));
        round_trip(
            &floats,
            "{1.5,NaN,-Infinity,1e+100,-0}",
            Value::Array(
                [1.5, f64::NAN, f64::NEG_INFINITY, 1e100, -0.0]
                    .map(|f| Some(Value::Float8(f)))
                    .to_vec(),
            ),
        );
        let stamps = array_of(scalar(oid::TIMESTAMPTZ));
        round_trip(
            &stamps,
            r#"{"1970-01-01 00:00:00+00",infinity}"#,
            Value::Array(vec![
                Some(Value::TimestampTz(TimestampValue::Micros(0))),
                Some(Value::TimestampTz(TimestampValue::Infinity)),
            ]),
        );
        round_trip(
            &array_of(scalar(oid::BYTEA)),
            r#"{"\\x01ff",NULL}"#,
            Value::Array(vec![Some(Value::Bytea(vec![1, 255])), None]),
        );
    }

    #[test]
    fn arrays_in_input_forms_postgresql_accepts() {
        let ints = array_of(scalar(oid::INT4));
        let strs = array_of(scalar(oid::TEXT));
        assert_eq!(
            parse_text(&ints, "[0:1]={1,2}"),
            Ok(int4s(&[Some(1), Some(2)]))
        );
        assert_eq!(
            parse_text(&ints, " { 1 , null ,\t3 } "),
            Ok(int4s(&[Some(1), None, Some(3)]))
        );
        assert_eq!(
            parse_text(&strs, r"{a\,b,N\ULL,\ x\ }"),
            Ok(texts(&[Some("a,b"), Some("NULL"), Some(" x ")]))
        );
        assert_eq!(
            parse_text(&strs, "{ \"q\" , u v }"),
            Ok(texts(&[Some("q"), Some("u v")]))
        );
    }

    #[test]
    fn nested_arrays() {
        let ints = array_of(scalar(oid::INT4));
        let square = Value::Array(vec![
            Some(int4s(&[Some(1), Some(2)])),
            Some(int4s(&[Some(3), None])),
        ]);
        round_trip(&ints, "{{1,2},{3,NULL}}", square.clone());
        assert_eq!(
            parse_text(&ints, "[1:2][3:4]={{1,2},{3,NULL}}"),
            Ok(square.clone())
        );
        assert_eq!(json(&square), "[[1,2],[3,null]]");
        let six = "{{{{{{1}}}}}}";
        assert!(parse_text(&ints, six).is_ok());
        parse_err(&ints, "{{{{{{{1}}}}}}}");
        // Deep nesting is refused by depth, never by running out of stack.
        parse_err(&ints, &"{".repeat(100_000));
    }

    #[test]
    fn arrays_of_box_use_semicolons() {
        let boxes = array_of(TypeInfo {
            oid: oid::BOX,
            kind: TypeKind::Other,
        });
        let b = |t: &str| {
            Some(Value::Other {
                type_oid: oid::BOX,
                text: t.into(),
            })
        };
        round_trip(
            &boxes,
            "{(1,1),(0,0);(2,2),(1,1)}",
            Value::Array(vec![b("(1,1),(0,0)"), b("(2,2),(1,1)")]),
        );
    }

    #[test]
    fn arrays_of_enums_and_json() {
        let moods = array_of(TypeInfo {
            oid: 16400,
            kind: TypeKind::Enum,
        });
        round_trip(
            &moods,
            "{happy,\"very sad\"}",
            Value::Array(vec![
                Some(Value::Enum("happy".into())),
                Some(Value::Enum("very sad".into())),
            ]),
        );
        let docs = array_of(scalar(oid::JSONB));
        let value = parse_text(&docs, r#"{"{\"a\": 1}",NULL}"#).unwrap();
        assert_eq!(
            value,
            Value::Array(vec![Some(Value::Jsonb("{\"a\": 1}".into())), None])
        );
        assert_eq!(json(&value), r#"[{"a":1},null]"#);
    }

    #[test]
    fn malformed_arrays() {
        let ints = array_of(scalar(oid::INT4));
        for text in [
            "", "1,2", "{1,2", "{1,,2}", "{1}x", "{\"1}", "{1,{2}}", "{{1},2}", "{1 2}",
            "[0:1]{1}", "[a]={1}", "{1\\", "{,}", "{\"a\"b}",
        ] {
            parse_err(&ints, text);
        }
        let err = parse_err(&ints, "{1,x}");
        assert_eq!(err.type_oid, 1007);
        assert!(err.why.contains("element \"x\""), "{}", err.why);
    }

    #[test]
    fn errors_name_the_type_and_text() {
        let err = parse_err(&scalar(oid::INT2), "99999");
        assert_eq!(err.type_oid, oid::INT2);
        assert_eq!(err.text, "99999");
        assert!(err
            .to_string()
            .starts_with("cannot decode \"99999\" as type 21: "));
    }

    #[test]
    fn calendar_agrees_with_chrono_across_its_range() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let (min, max) = (
            (NaiveDate::MIN - epoch).num_days(),
            (NaiveDate::MAX - epoch).num_days(),
        );
        let mut d = min;
        while d <= max {
            let date = epoch + TimeDelta::days(d);
            let (y, m, day) = (
                i64::from(date.year()),
                i64::from(date.month()),
                i64::from(date.day()),
            );
            assert_eq!(civil_from_days(d), (y, m, day), "{date}");
            assert_eq!(days_from_civil(y, m, day), d, "{date}");
            d += 9973;
        }
    }

    /// Significant digits and decimal exponent of any decimal rendering ("1.5e-7", "0.00015").
    fn digits_and_exponent(s: &str) -> (String, i32) {
        let (mantissa, exp) = match s.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().unwrap()),
            None => (s, 0),
        };
        let point = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
        let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let leading = all.len() - all.trim_start_matches('0').len();
        let digits = all.trim_matches('0').to_string();
        (digits, exp + point - leading as i32 - 1)
    }

    /// Our digits against upstream Ryu's (serde_json prints floats with the ryu crate).
    /// PostgreSQL's port differs from upstream in one way: it never prints a decimal lying
    /// exactly on the rounding interval's edge, so where Ryu does, ours must be longer.
    /// `v` is positive: the sign is printed apart from the digits.
    fn agrees_with_ryu<T: PgFloat + serde::Serialize>(v: T, ours: &str) -> Result<(), String> {
        let (digits, exp) = digits_and_exponent(&serde_json::to_string(&v).unwrap());
        let ryu = Decimal {
            digits: digits.into_bytes(),
            exp,
        };
        let (our_digits, our_exp) = digits_and_exponent(ours);
        let mine = Decimal {
            digits: our_digits.into_bytes(),
            exp: our_exp,
        };
        if !mine.strictly_rounds_to(v) {
            return Err(format!("{ours} does not strictly round to {v:e}"));
        }
        let same = (&mine.digits, mine.exp) == (&ryu.digits, ryu.exp);
        match ryu.strictly_rounds_to(v) {
            true if !same => Err(format!("{ours} but Ryu says {ryu:?}")),
            false if mine.digits.len() <= ryu.digits.len() => {
                Err(format!("{ours} is not longer than Ryu's edge case {ryu:?}"))
            }
            _ => Ok(()),
        }
    }

    #[test]
    fn float_digits_agree_with_ryu_across_the_bit_patterns() {
        for bits in (0..=u32::MAX).step_by(40_009) {
            let v = f32::from_bits(bits);
            if v.is_finite() && v != 0.0 {
                agrees_with_ryu(v.abs(), &float4_text(v.abs())).unwrap();
            }
        }
        for bits in (0..=u64::MAX).step_by(0x0000_7fff_ffff_ffff) {
            let v = f64::from_bits(bits);
            if v.is_finite() && v != 0.0 {
                agrees_with_ryu(v.abs(), &float8_text(v.abs())).unwrap();
            }
        }
    }

    #[test]
    fn float_edges_are_never_printed() {
        // Printed by PostgreSQL 15 (float4send bits, then text): each is one digit longer
        // than the shortest decimal, which lies exactly halfway to the neighbouring float4.
        let pg = [
            ("cc1a9d48", "-4.0531232e+07"),
            ("4e5d7342", "9.2882957e+08"),
            ("ce1c0510", "-6.5439437e+08"),
            ("4ca48dee", "8.6273904e+07"),
            ("4c488464", "5.2564368e+07"),
        ];
        for (hex, text) in pg {
            let v = f32::from_bits(u32::from_str_radix(hex, 16).unwrap());
            assert_eq!(float4_text(v), text);
            assert_eq!(parse_ok(oid::FLOAT4, text), Value::Float4(v));
        }
        // Also printed by PostgreSQL 15: a float8 edge (upstream Ryu: 1.07907809587585e17),
        // and large integers whose shortest forms are ordinary.
        let edge = f64::from_bits(0x4377_f5d9_4c2f_55fe);
        assert_eq!(float8_text(edge), "1.0790780958758499e+17");
        assert_eq!(
            parse_ok(oid::FLOAT8, "1.0790780958758499e+17"),
            Value::Float8(edge)
        );
        assert_eq!(float8_text(18014398509481988.0), "1.8014398509481988e+16");
        assert_eq!(float8_text(2f64.powi(60)), "1.152921504606847e+18");
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z ,{}\"\\\\]{0,8}",
            Just("NULL".to_string()),
            Just(String::new())
        ]
    }

    /// A type and a value of it, as PostgreSQL could send it.
    fn arb_scalar() -> impl Strategy<Value = (TypeInfo, Value)> {
        let micros = prop_oneof![
            8 => any::<i64>().prop_map(TimestampValue::Micros),
            1 => Just(TimestampValue::Infinity),
            1 => Just(TimestampValue::NegInfinity),
        ];
        let date = prop_oneof![
            8 => any::<i32>().prop_map(DateValue::Days),
            1 => Just(DateValue::Infinity),
            1 => Just(DateValue::NegInfinity),
        ];
        let numeric = prop_oneof![
            "-?[0-9]{1,40}(\\.[0-9]{1,40})?",
            Just("NaN".to_string()),
            Just("-Infinity".to_string())
        ];
        prop_oneof![
            any::<bool>().prop_map(|v| (scalar(oid::BOOL), Value::Bool(v))),
            any::<i16>().prop_map(|v| (scalar(oid::INT2), Value::Int2(v))),
            any::<i32>().prop_map(|v| (scalar(oid::INT4), Value::Int4(v))),
            any::<i64>().prop_map(|v| (scalar(oid::INT8), Value::Int8(v))),
            any::<f32>().prop_map(|v| (scalar(oid::FLOAT4), Value::Float4(v))),
            any::<f64>().prop_map(|v| (scalar(oid::FLOAT8), Value::Float8(v))),
            numeric.prop_map(|v| (scalar(oid::NUMERIC), Value::Numeric(v))),
            arb_text().prop_map(|v| (scalar(oid::TEXT), Value::Text(v))),
            vec(any::<u8>(), 0..16).prop_map(|v| (scalar(oid::BYTEA), Value::Bytea(v))),
            date.prop_map(|v| (scalar(oid::DATE), Value::Date(v))),
            (0..=MICROS_PER_DAY).prop_map(|v| (scalar(oid::TIME), Value::Time(v))),
            micros
                .clone()
                .prop_map(|v| (scalar(oid::TIMESTAMP), Value::Timestamp(v))),
            micros.prop_map(|v| (scalar(oid::TIMESTAMPTZ), Value::TimestampTz(v))),
            any::<[u8; 16]>().prop_map(|v| (scalar(oid::UUID), Value::Uuid(v))),
            arb_text().prop_map(|v| (scalar(oid::JSONB), Value::Jsonb(v))),
            arb_text().prop_map(|v| (
                TypeInfo {
                    oid: 16400,
                    kind: TypeKind::Enum
                },
                Value::Enum(v)
            )),
            arb_text().prop_map(|v| (
                TypeInfo {
                    oid: 1186,
                    kind: TypeKind::Other
                },
                Value::Other {
                    type_oid: 1186,
                    text: v
                }
            )),
        ]
    }

    /// Arrays of one to three dimensions (rectangular or not: the text round-trips either way).
    fn arb_array() -> impl Strategy<Value = (TypeInfo, Value)> {
        (arb_scalar(), 1..=3usize).prop_flat_map(|((ty, sample), dims)| {
            let elem = ty.clone();
            let leaf = proptest::option::weighted(0.8, arb_scalar_of(ty.clone(), sample));
            let mut level = vec(leaf, 0..4).prop_map(Value::Array).boxed();
            for _ in 1..dims {
                level = vec(level.prop_map(Some), 1..3)
                    .prop_map(Value::Array)
                    .boxed();
            }
            level.prop_map(move |v| (array_of(elem.clone()), v))
        })
    }

    /// More values of the type `sample` has.
    fn arb_scalar_of(ty: TypeInfo, sample: Value) -> impl Strategy<Value = Value> {
        arb_scalar()
            .prop_filter_map("same type", move |(t, v)| (t == ty).then_some(v))
            .boxed()
            .prop_union(Just(sample).boxed())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn scalars_round_trip_through_postgresql_text((ty, value) in arb_scalar()) {
            let text = value.to_pg_text();
            let parsed = parse_text(&ty, &text);
            prop_assert!(parsed.is_ok(), "{:?} printed as {:?}: {:?}", value, text, parsed);
            prop_assert_eq!(format!("{:?}", parsed.unwrap()), format!("{:?}", value));
        }

        #[test]
        fn arrays_round_trip_through_postgresql_text((ty, value) in arb_array()) {
            let text = value.to_pg_text();
            let parsed = parse_text(&ty, &text);
            prop_assert!(parsed.is_ok(), "{:?} printed as {:?}: {:?}", value, text, parsed);
            prop_assert_eq!(format!("{:?}", parsed.unwrap()), format!("{:?}", value));
        }

        #[test]
        fn float_digits_agree_with_ryu(
            v in any::<f64>().prop_filter("finite", |v| v.is_finite() && *v != 0.0),
            w in any::<f32>().prop_filter("finite", |v| v.is_finite() && *v != 0.0),
            n in (1u64 << 53)..(1u64 << 62),
        ) {
            prop_assert_eq!(agrees_with_ryu(v.abs(), &float8_text(v.abs())), Ok(()));
            prop_assert_eq!(agrees_with_ryu(w.abs(), &float4_text(w.abs())), Ok(()));
            // Integers past 2^53 are where float8 edges are common.
            let big = n as f64;
            prop_assert_eq!(agrees_with_ryu(big, &float8_text(big)), Ok(()));
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), oid in prop::sample::select(vec![
            oid::BOOL, oid::BYTEA, oid::INT2, oid::INT4, oid::INT8, oid::OID, oid::FLOAT4, oid::FLOAT8, oid::NUMERIC,
            oid::DATE, oid::TIME, oid::TIMESTAMP, oid::TIMESTAMPTZ, oid::UUID,
        ])) {
            let _ = parse_text(&scalar(oid), &text);
            let _ = parse_text(&array_of(scalar(oid)), &text);
        }

        #[test]
        fn array_like_text_never_panics(text in "[\\[\\]0-9:={},\"\\\\ a-zN]{0,24}") {
            let _ = parse_text(&array_of(scalar(oid::INT4)), &text);
            let _ = parse_text(&array_of(scalar(oid::TEXT)), &text);
        }

        #[test]
        fn timestamp_like_text_never_panics(text in "[0-9]{1,10}-[0-9]{1,3}-[0-9]{1,3}( [0-9]{1,3}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,8})?([+-][0-9]{1,3}(:[0-9]{2}){0,2})?)?( BC)?") {
            for oid in [oid::DATE, oid::TIMESTAMP, oid::TIMESTAMPTZ] {
                let _ = parse_text(&scalar(oid), &text);
            }
        }
    }
}
