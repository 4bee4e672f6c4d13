use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use proptest::prelude::*;

use super::*;
use crate::change::{Column, Datum, Table, TypeInfo, TypeKind, Value};
use crate::transform::decode::{envelope_json, key_json};

fn scalar(oid: u32) -> TypeInfo {
    TypeInfo {
        oid,
        kind: TypeKind::Scalar,
    }
}

fn col(name: &str, ty: TypeInfo, typmod: i32, key: bool) -> Column {
    Column {
        name: name.into(),
        type_oid: ty.oid,
        type_modifier: typmod,
        ty,
        key,
    }
}

/// numeric(p,s) as PostgreSQL packs it into the type modifier.
fn numeric_mod(p: i32, s: i32) -> i32 {
    ((p << 16) | s) + 4
}

fn table() -> Table {
    Table {
        oid: 1,
        schema: "public".into(),
        name: "t-1".into(),
        replica_identity: b'd',
        columns: vec![
            col("id", scalar(oid::INT4), -1, true),
            col("b", scalar(oid::BOOL), -1, false),
            col("i2", scalar(oid::INT2), -1, false),
            col("i8", scalar(oid::INT8), -1, false),
            col("f4", scalar(oid::FLOAT4), -1, false),
            col("f8", scalar(oid::FLOAT8), -1, false),
            col("n", scalar(oid::NUMERIC), -1, false),
            col("n2", scalar(oid::NUMERIC), numeric_mod(12, 3), false),
            col("t", scalar(oid::TEXT), -1, false),
            col("by", scalar(oid::BYTEA), -1, false),
            col("d", scalar(oid::DATE), -1, false),
            col("tm", scalar(oid::TIME), -1, false),
            col("ts", scalar(oid::TIMESTAMP), -1, false),
            col("tz", scalar(oid::TIMESTAMPTZ), -1, false),
            col("u", scalar(oid::UUID), -1, false),
            col("jb", scalar(oid::JSONB), -1, false),
            col(
                "e",
                TypeInfo {
                    oid: 90000,
                    kind: TypeKind::Enum,
                },
                -1,
                false,
            ),
            col(
                "ad",
                TypeInfo {
                    oid: 1182,
                    kind: TypeKind::Array(Box::new(scalar(oid::DATE))),
                },
                -1,
                false,
            ),
            col(
                "ai",
                TypeInfo {
                    oid: 1007,
                    kind: TypeKind::Array(Box::new(scalar(oid::INT4))),
                },
                -1,
                false,
            ),
            col("odd col", scalar(oid::TEXT), -1, false),
        ],
    }
}

fn v(x: Value) -> Datum {
    Datum::Value(x)
}

fn row() -> Vec<Datum> {
    vec![
        v(Value::Int4(-7)),
        v(Value::Bool(true)),
        v(Value::Int2(-32768)),
        v(Value::Int8(i64::MIN)),
        v(Value::Float4(f32::NAN)),
        v(Value::Float8(-0.0)),
        v(Value::Numeric("-1e-20".into())),
        v(Value::Numeric("-123456789.125".into())),
        Datum::Unchanged,
        v(Value::Bytea(vec![0, 255, 16])),
        v(Value::Date(DateValue::NegInfinity)),
        v(Value::Time(86_399_999_999)),
        v(Value::Timestamp(TimestampValue::Micros(
            -62_135_596_800_000_000,
        ))),
        v(Value::TimestampTz(TimestampValue::Infinity)),
        v(Value::Uuid([0xa0; 16])),
        v(Value::Jsonb(r#"{"a": [1, null]}"#.into())),
        v(Value::Enum("happy".into())),
        v(Value::Array(vec![
            Some(Value::Date(DateValue::Infinity)),
            None,
            Some(Value::Date(DateValue::Days(-1))),
        ])),
        v(Value::Array(vec![
            Some(Value::Array(vec![Some(Value::Int4(1))])),
            Some(Value::Array(vec![None])),
        ])),
        Datum::Null,
    ]
}

fn decode(schema: &Json, bytes: &[u8]) -> (Schema, apache_avro::types::Value) {
    let schema = Schema::parse(schema).expect("schema parses");
    let mut body = bytes;
    let value = GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("apache-avro decodes what the encoder wrote");
    assert!(body.is_empty(), "{} bytes left over", body.len());
    (schema, value)
}

#[test]
fn apache_avro_decodes_every_type_the_encoder_writes() {
    let t = table();
    let s = table_schema(&t, None, true);
    let meta = Meta {
        pipeline: "p",
        schema: "public",
        table: "t-1",
        op: 'u',
        commit_lsn: 0x1_0000_0010,
        seq: 3,
        xid: 77,
        commit_ts_ms: 1_700_000_000_000,
        now_ms: 1_700_000_000_001,
    };
    let before = vec![Datum::Null; t.columns.len()];
    let mut out = Vec::new();
    let attribute = Attribute {
        id: 5,
        name: "temp",
        data_type: "float",
    };
    s.encode_value(
        &meta,
        Some(&before),
        Some(&row()),
        Some(Some(attribute)),
        &mut out,
    )
    .unwrap();
    let (schema, value) = decode(&s.value, &out);
    let json = envelope_json(&schema, &value).unwrap();
    let after = &json["after"];
    assert_eq!(after["id"], -7);
    assert_eq!(after["i8"], i64::MIN);
    assert_eq!(after["f4"], "NaN");
    assert_eq!(after["n"], "-1e-20");
    assert_eq!(after["n2"], "-123456789.125");
    assert_eq!(after["by"], "\\x00ff10");
    assert_eq!(after["d"], "-infinity");
    assert_eq!(after["tm"], "23:59:59.999999");
    assert_eq!(after["ts"], "0001-01-01 00:00:00");
    assert_eq!(after["tz"], "infinity");
    assert_eq!(after["u"], "a0a0a0a0-a0a0-a0a0-a0a0-a0a0a0a0a0a0");
    assert_eq!(after["jb"], serde_json::json!({"a": [1, null]}));
    assert_eq!(after["e"], "happy");
    assert_eq!(
        after["ad"],
        serde_json::json!(["infinity", null, "1969-12-31"])
    );
    assert_eq!(after["ai"], serde_json::json!([[1], [null]]));
    assert_eq!(after["odd col"], Json::Null);
    assert!(
        after.get("t").is_none(),
        "an unchanged column is not a value: {after}"
    );
    assert_eq!(json["unchanged"], serde_json::json!(["t"]));
    assert_eq!(json["lsn"], "1/10");
    assert_eq!(json["seq"], 3);
    assert_eq!(json["xid"], 77);
    assert_eq!(json["op"], "u");
    assert_eq!(json["table"], "t-1");
    assert_eq!(json["attribute"]["name"], "temp");
    assert!(json["before"]
        .as_object()
        .unwrap()
        .values()
        .all(Json::is_null));

    let mut key = Vec::new();
    assert!(s.encode_key(&row(), &mut key).unwrap());
    let (kschema, kvalue) = decode(s.key.as_ref().unwrap(), &key);
    assert_eq!(
        key_json(&kschema, &kvalue).unwrap(),
        serde_json::json!({"id": -7})
    );
}

#[test]
fn unchanged_on_a_fixed_width_type_is_an_error_naming_the_column() {
    let t = table();
    let s = table_schema(&t, None, false);
    let mut r = row();
    r[1] = Datum::Unchanged;
    let meta = Meta {
        pipeline: "p",
        schema: "public",
        table: "t-1",
        op: 'u',
        commit_lsn: 1,
        seq: 0,
        xid: 1,
        commit_ts_ms: 0,
        now_ms: 0,
    };
    let err = s
        .encode_value(&meta, None, Some(&r), None, &mut Vec::new())
        .unwrap_err();
    assert_eq!(
        (err.table.as_str(), err.column.as_str()),
        ("public.t-1", "b")
    );
}

#[test]
fn keys_are_required_fields_with_the_same_bytes_whatever_the_rest_of_the_row() {
    let t = table();
    let s = table_schema(&t, None, false);
    let key = s.key.as_ref().unwrap();
    assert_eq!(key["fields"][0]["type"], "int", "no union: {key}");
    assert!(key["fields"][0].get("default").is_none());
    let bytes = |r: &[Datum]| {
        let mut out = Vec::new();
        s.encode_key(&r.to_vec(), &mut out).unwrap();
        out
    };
    let mut other = row();
    other[1] = Datum::Null;
    other[2] = Datum::Unchanged;
    // -7 as an Avro int (zig-zag varint), nothing else.
    assert_eq!(bytes(&row()), [13]);
    assert_eq!(bytes(&other), bytes(&row()));
    let mut keyless = row();
    keyless[0] = Datum::Unchanged;
    let err = s.encode_key(&keyless, &mut Vec::new()).unwrap_err();
    assert_eq!(
        (err.table.as_str(), err.column.as_str()),
        ("public.t-1", "id")
    );
}

#[test]
fn full_identity_tables_key_only_by_an_explicit_primary_key() {
    let mut t = table();
    t.replica_identity = b'f';
    for c in &mut t.columns {
        c.key = true;
    }
    assert!(table_schema(&t, None, false).key.is_none());
    assert!(table_schema(&t, Some(&[0]), false).key.is_some());
}

#[test]
fn adding_a_nullable_column_is_backward_compatible_and_a_type_change_is_not() {
    use crate::transform::encoding::backward;
    let t = table();
    let old = Schema::parse(&table_schema(&t, None, false).value).unwrap();
    let mut added = table();
    added.columns.push(col("new", scalar(oid::TEXT), -1, false));
    let new = Schema::parse(&table_schema(&added, None, false).value).unwrap();
    assert_eq!(backward(&old, &new), Ok(()));
    let mut changed = table();
    changed.columns[8] = col("t", scalar(oid::INT4), -1, false);
    let changed = Schema::parse(&table_schema(&changed, None, false).value).unwrap();
    let err = backward(&old, &changed).unwrap_err();
    assert!(err.contains("column t"), "{err}");
    // Widening int to bigint is a promotion Avro readers make.
    let mut widened = table();
    widened.columns[0] = col("id", scalar(oid::INT8), -1, true);
    let widened = Schema::parse(&table_schema(&widened, None, false).value).unwrap();
    assert_eq!(backward(&old, &widened), Ok(()));
}

proptest! {
    #[test]
    fn decimals_round_trip(int in "-?[1-9][0-9]{0,40}|0", frac in "[0-9]{0,6}", scale in 0u32..8) {
        prop_assume!(frac.len() <= scale as usize);
        let text = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
        let bytes = decimal_bytes(&text, scale).unwrap();
        let back = decimal_text(&bytes, scale);
        // PostgreSQL prints numeric(p,s) with exactly s fraction digits.
        let negative = text.starts_with('-') && text.trim_start_matches('-').chars().any(|c| c.is_ascii_digit() && c != '0');
        let digits = text.trim_start_matches('-');
        let (i, f) = digits.split_once('.').unwrap_or((digits, ""));
        let mut want = format!("{}{}", if negative { "-" } else { "" }, i.trim_start_matches('0'));
        if want.is_empty() || want == "-" { want.push('0'); }
        if scale > 0 { want.push('.'); want.push_str(&format!("{f:0<width$}", width = scale as usize)); }
        prop_assert_eq!(back, want);
        // Minimal two's complement, as Avro's decimal expects.
        let redundant_sign = bytes.len() > 1
            && ((bytes[0] == 0 && bytes[1] & 0x80 == 0) || (bytes[0] == 0xff && bytes[1] & 0x80 != 0));
        prop_assert!(!redundant_sign, "{bytes:?}");
    }
}
