use std::collections::HashSet;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use proptest::prelude::*;

use super::*;
use crate::change::{Column, DateValue, Datum, Table, TimestampValue, TypeInfo, TypeKind, Value};
use crate::source::value::oid;
use crate::transform::decode::{key_json, read_change};

fn scalar(oid: u32) -> TypeInfo {
    TypeInfo {
        oid,
        kind: TypeKind::Scalar,
    }
}

fn other(oid: u32) -> TypeInfo {
    TypeInfo {
        oid,
        kind: TypeKind::Other,
    }
}

fn col(name: &str, ty: TypeInfo, typmod: i32, key: bool) -> Column {
    Column {
        name: name.into(),
        type_oid: ty.oid,
        type_modifier: typmod,
        ty,
        key,
        nullable: !key,
    }
}

/// numeric(p,s) as PostgreSQL packs it into the type modifier.
fn numeric_mod(p: i32, s: i32) -> i32 {
    ((p << 16) | s) + 4
}

fn array(oid: u32, elem: u32) -> TypeInfo {
    TypeInfo {
        oid,
        kind: TypeKind::Array(Box::new(scalar(elem))),
    }
}

fn table() -> Table {
    let mut required = col("required_n", scalar(oid::NUMERIC), numeric_mod(5, 1), false);
    required.nullable = false;
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
                    kind: TypeKind::Enum(["sad".to_owned(), "happy".to_owned()].into()),
                },
                -1,
                false,
            ),
            col("ad", array(1182, oid::DATE), -1, false),
            col("ai", array(1007, oid::INT4), -1, false),
            col("odd col", scalar(oid::TEXT), -1, false),
            col("nan", scalar(oid::NUMERIC), numeric_mod(5, 1), false),
            required,
            col("m", other(790), -1, false),
            col("iv", other(1186), -1, false),
            col("bit", other(1560), 1, false),
            col("vb", other(1562), -1, false),
            col("ttz", other(1266), -1, false),
            col("tz3", scalar(oid::TIMESTAMPTZ), 3, false),
            col("ts3", scalar(oid::TIMESTAMP), 3, false),
            col("at", array(1009, oid::TEXT), -1, false),
            col("t2", scalar(oid::TEXT), -1, false),
            col("inet", other(869), -1, false),
            col("tzfar", scalar(oid::TIMESTAMPTZ), -1, false),
            col("vb1", other(1562), 1, false),
        ],
    }
}

fn v(x: Value) -> Datum {
    Datum::Value(x)
}

fn o(oid: u32, text: &str) -> Datum {
    v(Value::Other {
        type_oid: oid,
        text: text.into(),
    })
}

const PLACEHOLDER: &str = "__debezium_unavailable_value";

fn row() -> Vec<Datum> {
    vec![
        v(Value::Int4(-7)),
        v(Value::Bool(true)),
        v(Value::Int2(-32768)),
        v(Value::Int8(i64::MIN)),
        v(Value::Float4(1.5)),
        v(Value::Float8(-0.0)),
        v(Value::Numeric("-0.00000000000000000001".into())),
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
        v(Value::Numeric("NaN".into())),
        v(Value::Numeric("-Infinity".into())),
        o(790, "-$1,234.50"),
        o(1186, "1 year 2 mons -3 days +04:05:06.5"),
        o(1560, "1"),
        o(1562, "0010110"),
        o(1266, "12:34:56.789+05:30"),
        v(Value::TimestampTz(TimestampValue::Micros(
            1_767_323_045_123_000,
        ))),
        v(Value::Timestamp(TimestampValue::Micros(
            1_767_323_045_123_000,
        ))),
        Datum::Unchanged,
        v(Value::Text(PLACEHOLDER.into())),
        o(869, "10.0.0.1/8"),
        v(Value::TimestampTz(TimestampValue::Micros(
            253_402_300_800_000_000,
        ))),
        o(1562, ""),
    ]
}

/// A row as PostgreSQL's texts, unchanged marked: what must come back exactly.
fn texts(row: &[Datum]) -> Vec<Option<String>> {
    row.iter()
        .map(|d| match d {
            Datum::Null => None,
            Datum::Unchanged => Some("<unchanged>".into()),
            Datum::Value(v) => Some(v.to_pg_text()),
        })
        .collect()
}

fn decode(schema: &Json, bytes: &[u8]) -> (Schema, Avro) {
    let schema = Schema::parse(schema).expect("schema parses");
    let mut body = bytes;
    let value = GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("apache-avro decodes what the encoder wrote");
    assert!(body.is_empty(), "{} bytes left over", body.len());
    (schema, value)
}

fn origin() -> Origin {
    Origin {
        name: "shop".into(),
        db: "inventory".into(),
    }
}

fn meta<'a>(origin: &'a Origin, op: char) -> Meta<'a> {
    Meta {
        origin,
        schema: "public",
        table: "t-1",
        op,
        snapshot: Snapshot::False,
        lsn: 0x1_0000_0008,
        sequence: r#"["4294967040","4294967304"]"#,
        commit_lsn: 0x1_0000_0010,
        seq: 3,
        xid: 77,
        commit_ts_us: 1_700_000_000_000_123,
        now_ns: 1_700_000_000_001_000_007,
        transaction: None,
    }
}

fn schema(t: &Table) -> TableSchema {
    table_schema(
        "shop",
        t,
        None,
        None,
        true,
        &Options::default(),
        &HashSet::new(),
    )
}

/// The envelope's fields by name.
fn fields(value: &Avro) -> std::collections::HashMap<String, Avro> {
    let Avro::Record(f) = value else {
        panic!("not a record: {value:?}")
    };
    f.iter().cloned().collect()
}

fn unwrap(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        v => v,
    }
}

#[test]
fn every_value_comes_back_exactly_through_apache_avro_and_the_reader() {
    let t = table();
    let s = schema(&t);
    let origin = origin();
    let before: Vec<Datum> = row()
        .into_iter()
        .map(|d| {
            if matches!(d, Datum::Unchanged) {
                Datum::Null
            } else {
                d
            }
        })
        .collect();
    let mut before = before;
    before[21] = v(Value::Numeric("1.5".into()));
    let mut out = Vec::new();
    let attribute = Attribute {
        id: 5,
        name: "temp",
        data_type: "float",
    };
    s.encode_value(
        &meta(&origin, 'u'),
        Some(&before),
        Some(&row()),
        Some(attribute),
        &mut out,
    )
    .unwrap();
    let (schema, value) = decode(&s.value, &out);
    let change = read_change(&schema, &value).unwrap();
    let got = |image: &Option<crate::transform::decode::Image>| {
        let image = image.as_ref().expect("an image");
        let names: Vec<&str> = image.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, want);
        texts(&image.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>())
    };
    assert_eq!(got(&change.after), texts(&row()));
    assert_eq!(got(&change.before), texts(&before));
    assert_eq!(change.commit_lsn, crate::lsn::Lsn(0x1_0000_0010));
    assert_eq!(change.lsn, crate::lsn::Lsn(0x1_0000_0008));
    assert_eq!((change.seq, change.xid, change.op.as_str()), (3, 77, "u"));
    assert_eq!(
        (change.schema.as_str(), change.table.as_str()),
        ("public", "t-1")
    );
    assert_eq!(change.attribute, Some((5, "temp".into(), "float".into())));
    let json = change.to_json();
    assert_eq!(json["unchanged"], serde_json::json!(["t", "at"]));
    assert_eq!(json["lsn"], "1/10");

    let mut key = Vec::new();
    assert!(s.encode_key(&row(), &mut key).unwrap());
    let (kschema, kvalue) = decode(s.key.as_ref().unwrap(), &key);
    assert_eq!(
        key_json(&kschema, &kvalue).unwrap(),
        serde_json::json!({"id": -7})
    );
}

#[test]
fn columns_hold_debezium_s_forms_and_freshet_s_field_says_what_they_lose() {
    let t = table();
    let s = schema(&t);
    let origin = origin();
    let mut out = Vec::new();
    s.encode_value(&meta(&origin, 'c'), None, Some(&row()), None, &mut out)
        .unwrap();
    let (_, value) = decode(&s.value, &out);
    let envelope = fields(&value);
    let after = fields(unwrap(&envelope["after"]));
    let col = |name: &str| unwrap(&after[name]).clone();
    assert_eq!(col("tz3"), Avro::String("2026-01-02T03:04:05.123Z".into()));
    assert_eq!(col("tz"), Avro::String("infinity".into()));
    assert_eq!(col("ts3"), Avro::Long(1_767_323_045_123));
    assert_eq!(col("ts"), Avro::Long(-62_135_596_800_000_000));
    assert_eq!(col("tm"), Avro::Long(86_399_999_999));
    assert_eq!(
        col("u"),
        Avro::String("a0a0a0a0-a0a0-a0a0-a0a0-a0a0a0a0a0a0".into())
    );
    // numeric(12,3) is Connect's Decimal; unconstrained numeric VariableScaleDecimal.
    assert!(matches!(col("n2"), Avro::Decimal(_)), "{:?}", col("n2"));
    let Avro::Record(vsd) = col("n") else {
        panic!("{:?}", col("n"))
    };
    assert_eq!(vsd[0], ("scale".into(), Avro::Int(20)));
    assert_eq!(vsd[1], ("value".into(), Avro::Bytes(vec![0xff])));
    // Debezium's precise decimals have no NaN: null when the column may be, else zero.
    assert_eq!(col("nan"), Avro::Null);
    assert!(matches!(col("required_n"), Avro::Decimal(_)));
    // MicroDuration: a month is 365.25/12 days.
    let month = 365.25 / 12.0 * 86_400_000_000.0;
    let iv = 14.0 * month - 3.0 * 86_400_000_000.0 + 14_706_500_000.0;
    assert_eq!(col("iv"), Avro::Long(iv as i64));
    assert_eq!(col("bit"), Avro::Boolean(true));
    assert_eq!(col("vb"), Avro::Bytes(vec![0b0001_0110]));
    assert_eq!(col("ttz"), Avro::String("07:04:56.789Z".into()));
    // TOAST-unchanged: the placeholder in the column's own type, the column listed; a text
    // equal to the placeholder is a value, not listed.
    assert_eq!(col("t"), Avro::String(PLACEHOLDER.into()));
    assert_eq!(
        col("at"),
        Avro::Array(vec![Avro::Union(
            1,
            Box::new(Avro::String(PLACEHOLDER.into()))
        )])
    );
    assert_eq!(col("t2"), Avro::String(PLACEHOLDER.into()));
    let freshet = fields(unwrap(&envelope["freshet"]));
    let image = fields(&freshet["after"]);
    assert_eq!(
        image["unchanged"],
        Avro::Array(vec![Avro::String("t".into()), Avro::String("at".into())])
    );
    let Avro::Map(exact) = &image["exact"] else {
        panic!()
    };
    let mut lossy: Vec<&str> = exact.keys().map(String::as_str).collect();
    lossy.sort_unstable();
    assert_eq!(
        lossy,
        [
            "ad",
            "ai",
            "d",
            "iv",
            "m",
            "nan",
            "required_n",
            "ttz",
            "tz",
            "tzfar",
            "vb",
            "vb1"
        ]
    );
    let text = |s: &str| Avro::Union(1, Box::new(Avro::String(s.into())));
    assert_eq!(exact["m"], text("-$1,234.50"));
    assert_eq!(exact["ai"], text("{{1},{NULL}}"));
    let source = fields(&envelope["source"]);
    assert_eq!(source["connector"], Avro::String("postgresql".into()));
    assert_eq!(source["name"], Avro::String("shop".into()));
    assert_eq!(source["db"], Avro::String("inventory".into()));
    assert_eq!(unwrap(&source["snapshot"]), &Avro::String("false".into()));
    assert_eq!(source["ts_ms"], Avro::Long(1_700_000_000_000));
    assert_eq!(unwrap(&source["ts_us"]), &Avro::Long(1_700_000_000_000_123));
    assert_eq!(unwrap(&source["lsn"]), &Avro::Long(0x1_0000_0008));
    assert_eq!(
        unwrap(&source["sequence"]),
        &Avro::String(r#"["4294967040","4294967304"]"#.into())
    );
    assert_eq!(unwrap(&source["xmin"]), &Avro::Null);
    assert_eq!(unwrap(&envelope["ts_ms"]), &Avro::Long(1_700_000_000_001));
    assert_eq!(
        unwrap(&envelope["ts_ns"]),
        &Avro::Long(1_700_000_000_001_000_007)
    );
    assert_eq!(unwrap(&envelope["transaction"]), &Avro::Null);
}

#[test]
fn schemas_carry_debezium_s_names_and_not_null_columns_are_required() {
    let s = schema(&table());
    assert_eq!(s.value["name"], "Envelope");
    assert_eq!(s.value["namespace"], "shop.public.t_1");
    assert_eq!(s.value["connect.name"], "shop.public.t_1.Envelope");
    let value = &s.value["fields"][0]["type"][1];
    assert_eq!(value["connect.name"], "shop.public.t_1.Value");
    let field = |name: &str| {
        value["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field("id")["type"], "int");
    assert_eq!(
        field("required_n")["type"]["connect.name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(field("b")["type"], serde_json::json!(["null", "boolean"]));
    assert_eq!(field("b")["default"], Json::Null);
    assert_eq!(field("i2")["type"][1]["connect.type"], "int16");
    assert_eq!(
        field("tz")["type"][1]["connect.name"],
        "io.debezium.time.ZonedTimestamp"
    );
    assert_eq!(field("odd_col")["pg_name"], "odd col");
    assert_eq!(
        field("e")["type"][1]["connect.parameters"]["allowed"],
        "sad,happy"
    );
    let key = s.key.as_ref().unwrap();
    assert_eq!(key["connect.name"], "shop.public.t_1.Key");
    let source = &s.value["fields"][2]["type"];
    assert_eq!(
        source["connect.name"],
        "io.debezium.connector.postgresql.Source"
    );
    // Connect time types, as time_precision: connect writes them.
    let connect = Options {
        time_precision: crate::config::TimePrecision::Connect,
        ..Options::default()
    };
    let s = table_schema(
        "shop",
        &table(),
        None,
        None,
        false,
        &connect,
        &HashSet::new(),
    );
    let ts = &s.value["fields"][0]["type"][1]["fields"][12]["type"][1];
    assert_eq!(ts["logicalType"], "timestamp-millis");
}

#[test]
fn keys_are_required_fields_with_the_same_bytes_whatever_the_rest_of_the_row() {
    let t = table();
    let s = schema(&t);
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
    // Lossy is fine in a key (the value carries the exact text); NaN has no key form.
    let mut t = table();
    t.columns[6].key = true;
    let keyed = table_schema(
        "p",
        &t,
        None,
        None,
        false,
        &Options::default(),
        &HashSet::new(),
    );
    let mut lossy = row();
    lossy[6] = v(Value::Numeric("1.50".into()));
    assert!(keyed.encode_key(&lossy, &mut Vec::new()).is_ok());
    lossy[6] = v(Value::Numeric("NaN".into()));
    let err = keyed.encode_key(&lossy, &mut Vec::new()).unwrap_err();
    assert_eq!(err.column, "n");
    let mut keyless = row();
    keyless[0] = Datum::Unchanged;
    let err = s.encode_key(&keyless, &mut Vec::new()).unwrap_err();
    assert_eq!(
        (err.table.as_str(), err.column.as_str()),
        ("public.t-1", "id")
    );
}

#[test]
fn a_null_in_a_not_null_column_is_written_as_debezium_does_and_read_back_as_null() {
    let t = table();
    let s = schema(&t);
    let mut r = row();
    r[21] = Datum::Null;
    assert_eq!(s.nulls_in_required(&r), ["required_n"]);
    // Written (as Debezium, the type's zero) and read back as the NULL it was.
    let origin = origin();
    let mut out = Vec::new();
    s.encode_value(&meta(&origin, 'd'), Some(&r), None, None, &mut out)
        .unwrap();
    let (schema, value) = decode(&s.value, &out);
    let before = read_change(&schema, &value).unwrap().before.unwrap();
    assert_eq!(before[21], ("required_n".to_owned(), Datum::Null));
    let widened = table_schema(
        "shop",
        &t,
        None,
        None,
        true,
        &Options::default(),
        &HashSet::from(["required_n".to_owned()]),
    );
    assert!(widened.nulls_in_required(&r).is_empty());
}

#[test]
fn full_identity_tables_key_only_by_an_explicit_primary_key() {
    let mut t = table();
    t.replica_identity = b'f';
    for c in &mut t.columns {
        c.key = true;
    }
    let o = Options::default();
    assert!(
        table_schema("p", &t, None, None, false, &o, &HashSet::new())
            .key
            .is_none()
    );
    assert!(
        table_schema("p", &t, Some(&[0]), None, false, &o, &HashSet::new())
            .key
            .is_some()
    );
}

#[test]
fn adding_a_nullable_column_is_backward_compatible_and_a_type_change_is_not() {
    use crate::transform::encoding::backward;
    let parse = |t: &Table| {
        Schema::parse(
            &table_schema(
                "p",
                t,
                None,
                None,
                false,
                &Options::default(),
                &HashSet::new(),
            )
            .value,
        )
        .unwrap()
    };
    let t = table();
    let old = parse(&t);
    let mut added = table();
    added.columns.push(col("new", scalar(oid::TEXT), -1, false));
    assert_eq!(backward(&old, &parse(&added)), Ok(()));
    let mut changed = table();
    changed.columns[8] = col("t", scalar(oid::INT4), -1, false);
    let err = backward(&old, &parse(&changed)).unwrap_err();
    assert!(err.contains("column t"), "{err}");
    // Widening int to bigint is a promotion Avro readers make.
    let mut widened = table();
    widened.columns[0] = col("id", scalar(oid::INT8), -1, true);
    assert_eq!(backward(&old, &parse(&widened)), Ok(()));
}

proptest! {
    #[test]
    fn decimals_round_trip(int in "-?[1-9][0-9]{0,40}|0", frac in "[0-9]{0,6}", scale in 0u32..8) {
        prop_assume!(frac.len() <= scale as usize);
        let text = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
        let bytes = column::decimal_bytes(&text, scale).unwrap();
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
