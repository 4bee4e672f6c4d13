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
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
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
        kind: TypeKind::Enum(Default::default()),
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
        kind: TypeKind::Enum(Default::default()),
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
        "", "1,2", "{1,2", "{1,,2}", "{1}x", "{\"1}", "{1,{2}}", "{{1},2}", "{1 2}", "[0:1]{1}",
        "[a]={1}", "{1\\", "{,}", "{\"a\"b}",
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
                kind: TypeKind::Enum(Default::default())
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
