//! The every-type fixture: a table of each PostgreSQL type this pipeline maps, rows at the
//! edges of each type, and PostgreSQL's own rendering of them to compare with.

use serde_json::Value as Json;

pub const TYPES_DDL: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id int PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, n2 numeric(40,10),
    t text, vc varchar(20), c char(4), by bytea, d date, tm time, ts timestamp, tz timestamptz,
    u uuid, j json, jb jsonb, ai int4[], at text[], a2 int4[][], e mood, ea mood[]
);
CREATE TABLE "Odd ""Table""" ("Key Col" int PRIMARY KEY, "väl" text);
CREATE PUBLICATION PUB_PLACEHOLDER FOR TABLE all_types, "Odd ""Table""" WITH (publish_via_partition_root = true);
"#;

pub const TYPE_ROWS: &str = r#"
SET TIME ZONE 'America/New_York';
INSERT INTO all_types VALUES
 (1, true, -32768, -2147483648, -9223372036854775808, 3.4028235e38, 1e-300, 'NaN', 123456789012345678901234567890.0123456789,
  '', '', 'ab', '\x', '2026-02-28', '00:00:00', '2026-01-01 00:00:00', '2026-07-01 12:34:56.789+02',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [true, null]}', '{"b": 1, "a": [true, null]}',
  '{1,NULL,3}', '{"a b","c,d","e\"f",NULL,"NULL",""}', '{{1,2},{3,4}}', 'happy', '{sad,happy}'),
 (2, false, 32767, 2147483647, 9223372036854775807, '-Infinity', 'Infinity', '-1e-20', 0.5,
  'Grüße, 東京 🚀 "quoted" \ back', 'x', 'abcd', '\x00ff10', 'infinity', '23:59:59.999999', '-infinity', 'infinity',
  '00000000-0000-0000-0000-000000000000', '[]', '"s"', '{}', '{}', '{}', 'sad', '{}'),
 (3, NULL, NULL, NULL, NULL, 'NaN', -0.0, 1e100, NULL, NULL, NULL, NULL, NULL, '0044-03-15 BC', '12:00:00.5',
  '0044-03-15 12:00:00 BC', '1999-12-31 23:59:59.000001-08', NULL, 'null', 'null', NULL, NULL, NULL, NULL, NULL),
 (4, NULL, 0, 0, 0, 1.1, 0.1, 3.14159265358979323846264338327950288419716939937510, -99.5,
  repeat('x', 100), NULL, NULL, NULL, '1970-01-01', NULL, '2000-01-01 00:00:00', '1970-01-01 00:00:00+00',
  NULL, NULL, '{"deep": {"x": [1, 2.5, "three"]}}', NULL, '{"",NULL}', NULL, 'ok', NULL);
INSERT INTO "Odd ""Table""" VALUES (1, 'ärger'), (2, NULL);
"#;

/// PostgreSQL's own rendering of each column, in the mapping the jsonl output promises:
/// to_jsonb for JSON-native types, the text output for exact or temporal ones.
pub const EXPECTED_SQL: &str = r#"
SELECT id, jsonb_build_object(
  'id', to_jsonb(id), 'b', to_jsonb(b), 'i2', to_jsonb(i2), 'i4', to_jsonb(i4), 'i8', to_jsonb(i8),
  'f4', to_jsonb(f4), 'f8', to_jsonb(f8), 'n', to_jsonb(n::text), 'n2', to_jsonb(n2::text), 't', to_jsonb(t),
  'vc', to_jsonb(vc), 'c', to_jsonb(c), 'by', to_jsonb(by), 'd', to_jsonb(d::text), 'tm', to_jsonb(tm::text),
  'ts', to_jsonb(ts::text), 'tz', to_jsonb(tz::text), 'u', to_jsonb(u), 'j', j::jsonb, 'jb', jb,
  'ai', to_jsonb(ai), 'at', to_jsonb(at), 'a2', to_jsonb(a2), 'e', to_jsonb(e), 'ea', to_jsonb(ea))::text
FROM all_types ORDER BY id
"#;

pub fn after(line: &Json) -> &serde_json::Map<String, Json> {
    line["after"]
        .as_object()
        .unwrap_or_else(|| panic!("no after in {line}"))
}

/// JSON equality where numbers compare by value (1.0 == 1), as PostgreSQL's and serde's
/// number renderings differ in form only.
pub fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Each captured all_types row equals PostgreSQL's own rendering of that row, column by column.
pub fn assert_types(captured: &[&Json], rows: &[tokio_postgres::Row]) {
    for line in captured {
        let got = after(line);
        let id = got["id"].as_i64().unwrap();
        let row = rows
            .iter()
            .find(|r| r.get::<_, i32>(0) as i64 == id)
            .unwrap();
        let expected: Json = serde_json::from_str(&row.get::<_, String>(1)).unwrap();
        let expected = expected.as_object().unwrap();
        for (column, want) in expected {
            let have = got
                .get(column)
                .unwrap_or_else(|| panic!("row {id}: column {column} missing in {line}"));
            assert!(
                same(have, want),
                "row {id} column {column}: captured {have} but the source has {want}"
            );
        }
        assert_eq!(got.len(), expected.len(), "{line}");
    }
}
