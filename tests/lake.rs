//! The lake end to end: PostgreSQL 15 → `freshet run` → Tansu → the batcher → Parquet in a
//! directory or in S3 (moto's server). The lake is read back by pyarrow, as its users read
//! it, replayed by change identity and compared with the source, row by row.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::atlasco::*;
use support::kafka::{topic_lines, Broker, Engine, Mode, Proxy};
use support::lake::{read_dir, read_s3, Lake, MotoS3};
use support::{Daemon, Setup};

/// A table without a key: updates and deletes find their row by its old image.
const NOTES_DDL: &str =
    "CREATE TABLE public.notes (n int, body text); ALTER TABLE public.notes REPLICA IDENTITY FULL;";

fn batcher_yaml(store: &str, extra: &str) -> String {
    format!("batcher:\n  store: {store}\n  rotation:\n    max_rows: 400\n    max_age: 1s\n{extra}")
}

/// `public.t` (made by `ddl`), published, a broker, and `freshet run` (both halves) writing
/// it into a local lake; `extra` follows the kafka section (a batcher section, or
/// `batcher_yaml`'s when empty).
async fn one_table(prefix: &str, ddl: &str, extra: &str) -> (Setup, Broker, PathBuf, Daemon) {
    let s = Setup::new(prefix, ddl).await;
    s.publish("t").await;
    let broker = Broker::start(Engine::Memory);
    let extra = if extra.is_empty() {
        batcher_yaml(&format!("file://{}", s.lake_dir().display()), "")
    } else {
        extra.replace("STORE", &format!("file://{}", s.lake_dir().display()))
    };
    let pipeline = s.kafka_pipeline(&["public.t"], &broker.brokers(), &extra, false);
    let daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    (s, broker, pipeline, daemon)
}

/// The lake once it holds `rows` rows (any, when 0).
async fn lake_with_rows(dir: &Path, rows: usize) -> Lake {
    support::wait_for(
        &format!("{rows} rows in the lake"),
        Duration::from_secs(60),
        || {
            let lake = read_dir(dir);
            let done = if rows == 0 {
                !lake.rows.is_empty()
            } else {
                lake.rows.len() == rows
            };
            async move { done.then_some(lake) }
        },
    )
    .await
}

impl Setup {
    /// The AtlasCo schema, its fixtures and `public.notes`, all published.
    async fn lake(prefix: &str) -> Setup {
        let s = Setup::new(prefix, &format!("{}\n{NOTES_DDL}", support::schema_sql())).await;
        s.client
            .batch_execute(ATLASCO_FIXTURES)
            .await
            .expect("fixtures");
        s.publish_lake().await;
        s
    }

    /// As [`Setup::lake`], filled by `freshet loadgen fill` for `freshet loadgen run` to write.
    async fn lake_filled(prefix: &str) -> Setup {
        let s = Setup::new(prefix, NOTES_DDL).await;
        freshet_loadgen_fill(&s.db.url, 20);
        s.publish_lake().await;
        s
    }

    async fn publish_lake(&self) {
        self.client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE atlasco.tenants, atlasco.attributes, atlasco.entities,
                   atlasco.entity_values, public.notes WITH (publish_via_partition_root = true)",
                self.slot
            ))
            .await
            .expect("publication");
    }

    /// The pipeline file of [`TABLES`] with the EAV mapping, snapshot on, into the local lake.
    fn lake_pipeline(&self, brokers: &str) -> PathBuf {
        let store = format!("file://{}", self.lake_dir().display());
        self.kafka_pipeline(
            &TABLES,
            brokers,
            &format!("{EAV}{}", batcher_yaml(&store, "")),
            true,
        )
    }

    fn lake_dir(&self) -> PathBuf {
        self.dir.path().join("lake")
    }
}

const TABLES: [&str; 5] = [
    "atlasco.tenants",
    "atlasco.attributes",
    "atlasco.entities",
    "atlasco.entity_values",
    "public.notes",
];

/// Inserts, updates, deletes, a key change, TOASTed values left unchanged by an update, a
/// rollback ([`ROLLED_BACK`]), and a TRUNCATE followed by new rows ([`WORKLOAD_AFTER`]), on a
/// keyed table, the EAV value table and a table without a key.
const WORKLOAD: &str = "
INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) SELECT 1 + g % 4, g, 'device' FROM generate_series(1, 300) g;
INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value) SELECT 1 + g % 4, g, 1, 'status-' || g FROM generate_series(1, 300) g;
INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, float_value) SELECT 1 + g % 4, g, 2, g * 0.5 FROM generate_series(1, 300) g;
INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, integer_value) SELECT 1 + g % 4, g, 3, g FROM generate_series(1, 100) g;
UPDATE atlasco.entity_values SET float_value = float_value + 1 WHERE attribute_id = 2 AND entity_id % 3 = 0;
DELETE FROM atlasco.entity_values WHERE attribute_id = 1 AND entity_id % 5 = 0;
UPDATE atlasco.entity_values SET string_value = (SELECT string_agg(md5(entity_id::text || g), '') FROM generate_series(1, 300) g) WHERE attribute_id = 1 AND entity_id <= 12;
UPDATE atlasco.entity_values SET updated_at = now() + interval '1 hour' WHERE attribute_id = 1 AND entity_id <= 12;
UPDATE atlasco.entities SET entity_id = entity_id + 100000 WHERE entity_id <= 6;
UPDATE atlasco.entities SET entity_type = 'sensor' WHERE entity_id % 7 = 0;
DELETE FROM atlasco.entities WHERE entity_id % 11 = 0;
";

/// A transaction rolled back: nothing of it may reach the lake. (Its own round trip: a BEGIN
/// inside a multi-statement query takes the statements before it into its transaction.)
const ROLLED_BACK: &str =
    "BEGIN; INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) VALUES (1, 999999, 'ghost'); ROLLBACK;";

const WORKLOAD_AFTER: &str = "
INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 60) g;
INSERT INTO public.notes VALUES (1, 'note 1');
UPDATE public.notes SET body = body || ' edited' WHERE n % 4 = 0;
DELETE FROM public.notes WHERE n % 7 = 0;
TRUNCATE atlasco.entity_values;
INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, integer_value) SELECT 1 + g % 4, g, 3, g * 10 FROM generate_series(1, 150) g;
UPDATE atlasco.entity_values SET integer_value = integer_value + 1 WHERE entity_id % 2 = 0;
UPDATE atlasco.tenants SET name = name || '!' WHERE tenant_id = 2;
";

async fn workload(client: &tokio_postgres::Client) {
    for part in [WORKLOAD, ROLLED_BACK, WORKLOAD_AFTER] {
        client.batch_execute(part).await.expect("workload");
    }
}

/// Changes to the table without a key, beside a loadgen run.
async fn notes_workload(client: &tokio_postgres::Client) {
    for part in NOTES_WORKLOAD {
        client.batch_execute(part).await.expect("notes workload");
    }
}

const NOTES_WORKLOAD: [&str; 4] = [
    "INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 60) g",
    "INSERT INTO public.notes VALUES (1, 'note 1')",
    "UPDATE public.notes SET body = body || ' edited' WHERE n % 4 = 0",
    "DELETE FROM public.notes WHERE n % 7 = 0",
];

/// `public.notes` as a multiset of its rows, each row its columns' texts.
type Notes = BTreeMap<String, usize>;

fn note_key(row: &Json) -> String {
    let text = |v: &Json| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    format!("{}|{}", text(&row["n"]), text(&row["body"]))
}

/// The lake's notes replayed: updates and deletes remove one row equal to their old image.
fn replay_notes(lines: &[&Json]) -> Notes {
    let mut notes = Notes::new();
    let owned: Vec<Json> = lines.iter().map(|l| (*l).clone()).collect();
    for l in support::by_identity(&owned) {
        let mut remove = |row: &Json| {
            let k = note_key(row);
            match notes.get_mut(&k) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    notes.remove(&k);
                }
                None => panic!("no row {k} to change: {l}"),
            }
        };
        match l["op"].as_str().unwrap() {
            "c" | "r" => *notes.entry(note_key(&l["after"])).or_default() += 1,
            "u" => {
                remove(&l["before"]);
                *notes.entry(note_key(&l["after"])).or_default() += 1;
            }
            "d" => remove(&l["before"]),
            "t" => notes.clear(),
            other => panic!("op {other}"),
        }
    }
    notes
}

async fn source_notes(client: &tokio_postgres::Client) -> Notes {
    let mut notes = Notes::new();
    for r in client
        .query("SELECT n::text, body FROM public.notes", &[])
        .await
        .unwrap()
    {
        let row = serde_json::json!({"n": r.get::<_, String>(0), "body": r.get::<_, String>(1)});
        *notes.entry(note_key(&row)).or_default() += 1;
    }
    notes
}

/// Where the lake differs from the source, if it does.
async fn difference(lake: &Lake, client: &tokio_postgres::Client) -> Option<String> {
    let atlasco: Vec<Json> = lake
        .rows
        .iter()
        .filter(|r| r["schema"] == "atlasco")
        .cloned()
        .collect();
    let got = support::replay(&atlasco, atlasco_key, false);
    let want = source_state(client).await;
    if let Some(d) = state_difference(&got, &want) {
        return Some(d);
    }
    let notes = replay_notes(&lake.table("public.notes"));
    let want_notes = source_notes(client).await;
    (notes != want_notes)
        .then(|| format!("notes: the lake has {notes:?}, the source {want_notes:?}"))
}

/// Waits until the lake replays to the source; panics with the last difference.
async fn lake_equals_source(
    read: impl Fn() -> Lake,
    client: &tokio_postgres::Client,
    daemon: &Daemon,
) -> Lake {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let lake = read();
        let diff = difference(&lake, client).await;
        match diff {
            None => return lake,
            Some(d) if Instant::now() > deadline => {
                panic!(
                    "the lake never equalled the source: {d}\nlog:\n{}",
                    daemon.log_text()
                )
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// Every record Kafka holds (tombstones aside) is in the lake, at its offset, once.
async fn every_offset_is_in_the_lake(pipeline: &Path, held: &BTreeMap<(String, i64), Vec<i64>>) {
    let mut records = 0;
    for table in TABLES {
        let (schema, name) = table.split_once('.').unwrap();
        let dir = format!("{schema}.{name}");
        let mut in_kafka: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for l in topic_lines(pipeline, table).await {
            in_kafka
                .entry(l["partition"].as_i64().unwrap())
                .or_default()
                .push(l["offset"].as_i64().unwrap());
        }
        records += in_kafka.values().map(Vec::len).sum::<usize>();
        for (partition, mut offsets) in in_kafka {
            offsets.sort();
            let lake = held
                .get(&(dir.clone(), partition))
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                lake, offsets,
                "{table} partition {partition}: the lake's offsets differ from Kafka's"
            );
        }
    }
    assert!(
        records > 0,
        "Kafka holds no record to compare the lake with"
    );
}

#[tokio::test]
async fn the_lake_equals_the_source_after_a_mixed_workload() {
    let s = Setup::lake("lake_mixed").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.lake_pipeline(&broker.brokers());
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    workload(&s.client).await;
    let dir = s.lake_dir();
    lake_equals_source(|| read_dir(&dir), &s.client, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    let lake = read_dir(&s.lake_dir());
    let held = lake.assert_consistent();
    every_offset_is_in_the_lake(&pipeline, &held).await;
    // Every kind of change reached the lake.
    for op in ["r", "c", "u", "d", "t"] {
        assert!(
            lake.rows.iter().any(|r| r["op"] == op),
            "no {op} row in the lake"
        );
    }
    assert!(
        lake.rows
            .iter()
            .any(|r| r["unchanged"] == serde_json::json!(["string_value"])),
        "the TOAST-unchanged updates list their column"
    );
    // The EAV value table carries its typed value columns and the attribute's name and type.
    let values = lake
        .objects
        .iter()
        .find(|o| {
            o["key"]
                .as_str()
                .unwrap()
                .starts_with("atlasco.entity_values/")
        })
        .expect("an entity_values object");
    let types = &values["types"];
    for (column, want) in [
        ("tenant_id", "int32"),
        ("entity_id", "int64"),
        ("string_value", "string"),
        ("integer_value", "int64"),
        ("float_value", "double"),
        ("boolean_value", "bool"),
        ("timestamp_value", "timestamp[us, tz=UTC]"),
        ("_freshet_op", "string"),
        ("_freshet_commit_lsn", "int64"),
        ("_freshet_commit_ts", "timestamp[ms, tz=UTC]"),
        ("_freshet_kafka_offset", "int64"),
        ("_freshet_unchanged", "string"),
        ("_freshet_attribute_name", "string"),
    ] {
        assert_eq!(types[column], want, "entity_values.{column}: {types}");
    }
    assert_eq!(values["compression"], "ZSTD");
    let status = lake
        .table("atlasco.entity_values")
        .into_iter()
        .find(|r| r["op"] == "c" && r["after"]["attribute_id"] == 1)
        .expect("a status value");
    assert_eq!(status["attribute"], serde_json::json!(["status", "string"]));
}

/// Decimal columns Parquet holds as decimals, money, and a time at the end of the day.
const DECIMALS_DDL: &str =
    "CREATE TABLE decimals (id int PRIMARY KEY, d numeric(12,2), m money, tm time);";
const DECIMAL_ROWS: &str = "INSERT INTO decimals VALUES
  (1, 1234567890.12, 1234.56, '23:59:59.999999'), (2, -0.05, -0.05, '24:00:00'),
  (3, 'NaN', 92233720368547758.07, '00:00:00'), (4, NULL, NULL, NULL);";

#[tokio::test]
async fn every_type_lands_typed() {
    use support::types::{TYPES_DDL, TYPE_ROWS};
    let s = Setup::new("lake_types", DECIMALS_DDL).await;
    let ddl = TYPES_DDL.replace(
        "CREATE PUBLICATION PUB_PLACEHOLDER FOR TABLE all_types,",
        &format!(
            "CREATE PUBLICATION {} FOR TABLE all_types, decimals,",
            s.slot
        ),
    );
    s.client.batch_execute(&ddl).await.expect("types ddl");
    let broker = Broker::start(Engine::Memory);
    let store = format!("file://{}", s.lake_dir().display());
    let pipeline = s.kafka_pipeline(
        &["public.all_types", "public.decimals"],
        &broker.brokers(),
        &batcher_yaml(&store, ""),
        false,
    );
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client.batch_execute(TYPE_ROWS).await.expect("rows");
    s.client.batch_execute(DECIMAL_ROWS).await.expect("rows");
    let dir = s.lake_dir();
    let lake = support::wait_for("every row in the lake", Duration::from_secs(120), || {
        let dir = dir.clone();
        async move {
            let lake = read_dir(&dir);
            (lake.table("public.all_types").len() == 4 && lake.table("public.decimals").len() == 4)
                .then_some(lake)
        }
    })
    .await;
    assert_eq!(daemon.terminate(), Some(0));
    let types_of = |table: &str| {
        lake.objects
            .iter()
            .find(|o| o["key"].as_str().unwrap().starts_with(table))
            .unwrap_or_else(|| panic!("an object of {table}"))["types"]
            .clone()
    };
    let types = types_of("public.all_types/");
    for (column, want) in [
        ("id", "int32"),
        ("b", "bool"),
        ("i2", "int16"),
        ("i4", "int32"),
        ("i8", "int64"),
        ("f4", "float"),
        ("f8", "double"),
        // Unconstrained, or wider than Parquet's 38 digits: exact text.
        ("n", "string"),
        ("n2", "string"),
        ("t", "string"),
        ("by", "binary"),
        ("d", "date32[day]"),
        ("tm", "time64[us]"),
        ("ts", "timestamp[us]"),
        ("tz", "timestamp[us, tz=UTC]"),
        ("u", "string"),
        ("jb", "string"),
        // A multi-dimensional array is NULL in its list column and exact in _freshet_exact.
        ("ai", "list<item: int32>"),
        ("a2", "list<item: int32>"),
        ("at", "list<item: string>"),
        ("e", "string"),
        ("ea", "list<item: string>"),
    ] {
        assert_eq!(types[column], want, "all_types.{column}: {types}");
    }
    let types = types_of("public.decimals/");
    assert_eq!(types["d"], "decimal128(12, 2)", "{types}");
    assert_eq!(types["m"], "decimal128(19, 2)", "{types}");
    // PostgreSQL's rendering of each value, in the form the lake reader gives it; temporal
    // values Python cannot print (before year 1) are compared by their day or microsecond.
    let expected = s
        .client
        .query(
            "SELECT 'all_types', id, jsonb_build_object('b', to_jsonb(b), 'i2', i2, 'i4', i4,
               'i8', i8, 'f4', to_jsonb(f4), 'f8', to_jsonb(f8), 'n', n::text, 'n2', n2::text,
               't', t, 'vc', vc, 'c', c, 'by', to_jsonb(by), 'u', u::text, 'e', e::text,
               'd', CASE WHEN d < '0001-01-01' AND isfinite(d) THEN to_jsonb(d - '1970-01-01'::date) ELSE to_jsonb(d::text) END,
               'ts', CASE WHEN ts < '0001-01-01' AND isfinite(ts) THEN to_jsonb((extract(epoch FROM ts) * 1000000)::bigint)
                          ELSE to_jsonb(ts) END,
               'tz', to_jsonb(tz), 'tm', to_jsonb(tm),
               'ai', to_jsonb(ai), 'at', to_jsonb(at), 'ea', to_jsonb(ea),
               'a2', CASE WHEN array_ndims(a2) > 1 THEN to_jsonb(a2::text) ELSE to_jsonb(a2) END)::text
             FROM all_types
             UNION ALL
             SELECT 'decimals', id, jsonb_build_object('d', d::text, 'm', m::numeric::text,
               'tm', CASE WHEN tm = '24:00:00' THEN to_jsonb(tm::text) ELSE to_jsonb(tm) END)::text
             FROM decimals ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    for row in expected {
        let (table, id) = (row.get::<_, String>(0), row.get::<_, i32>(1));
        let want: Json = serde_json::from_str(&row.get::<_, String>(2)).unwrap();
        let got = lake
            .table(&format!("public.{table}"))
            .into_iter()
            .find(|r| r["after"]["id"] == id)
            .unwrap_or_else(|| panic!("{table} row {id}"))["after"]
            .clone();
        for (column, w) in want.as_object().unwrap() {
            let mut g = got[column].clone();
            if let Some(n) = g.get("out_of_range") {
                g = n.clone();
            }
            assert!(
                same_value(column, &g, w),
                "{table} row {id} column {column}: the lake has {g}, the source {w}"
            );
        }
    }
}

/// A lake value equals PostgreSQL's: JSON-equal, the same instant, the same time of day
/// (PostgreSQL drops trailing fraction zeros: `column` tm only), or f4 to float4's
/// precision.
fn same_value(column: &str, lake: &Json, source: &Json) -> bool {
    if support::types::same(lake, source) {
        return true;
    }
    match (lake, source) {
        (Json::String(a), Json::String(b)) => {
            let trim = |t: &str| {
                if t.contains('.') {
                    t.trim_end_matches('0').trim_end_matches('.').to_owned()
                } else {
                    t.to_owned()
                }
            };
            (instant(a).is_some() && instant(a) == instant(b))
                || (column == "tm" && trim(a) == trim(b))
        }
        (Json::Number(a), Json::Number(b)) if column == "f4" => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            ((a - b) / b).abs() < 1e-6
        }
        _ => false,
    }
}

#[tokio::test]
async fn an_idle_tables_open_file_is_closed_within_a_quarter_of_its_budget() {
    // Rotation alone would keep the file open for a minute; the table's class allows 12 s, a
    // quarter of it for the file (another for its load into the warehouse).
    let (s, _broker, _pipeline, mut daemon) = one_table(
        "lake_idle",
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "batcher:\n  store: STORE\n  rotation:\n    max_age: 60s\ntables:\n  public.t: { freshness: quick }\nfreshness_classes:\n  quick: 12s\n",
    )
    .await;
    s.client
        .batch_execute("INSERT INTO t VALUES (1, 'only row')")
        .await
        .unwrap();
    let dir = s.lake_dir();
    let lake = lake_with_rows(&dir, 0).await;
    // From PostgreSQL's commit to the object in place (its file's time; server and store on
    // one clock here), whatever the polling above added.
    let row = &lake.rows[0];
    let committed = chrono::DateTime::parse_from_rfc3339(row["commit_ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let written: chrono::DateTime<chrono::Utc> =
        std::fs::metadata(dir.join(row["object"].as_str().unwrap()))
            .unwrap()
            .modified()
            .unwrap()
            .into();
    let took = written.timestamp_millis() - committed;
    assert!(
        (3000..3000 + 1000).contains(&took),
        "the file closed {took} ms after the commit; a quarter of the budget is 3 s; log:\n{}",
        daemon.log_text()
    );
    assert!(daemon.running(), "log:\n{}", daemon.log_text());
    assert_eq!(daemon.terminate(), Some(0));
}

#[tokio::test]
async fn a_column_added_mid_stream_starts_a_file_of_the_new_shape() {
    let (s, _broker, _pipeline, mut daemon) = one_table(
        "lake_alter",
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "",
    )
    .await;
    s.client
        .batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g")
        .await
        .unwrap();
    // The sink has read the first shape before the second is published.
    let dir = s.lake_dir();
    lake_with_rows(&dir, 20).await;
    for sql in [
        "ALTER TABLE t ADD COLUMN w int",
        "INSERT INTO t SELECT g, 'v' || g, g * 10 FROM generate_series(21, 40) g",
        "UPDATE t SET w = -id WHERE id <= 5",
    ] {
        s.client.batch_execute(sql).await.unwrap();
    }
    let lake = lake_with_rows(&dir, 45).await;
    assert!(
        daemon.running(),
        "the new shape stopped nothing; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(daemon.terminate(), Some(0));
    lake.assert_consistent();
    let shapes: std::collections::BTreeSet<bool> = lake
        .objects
        .iter()
        .map(|o| o["types"].get("w").is_some())
        .collect();
    assert_eq!(
        shapes.len(),
        2,
        "objects of both shapes: {:?}",
        lake.objects
    );
    let mut rows: BTreeMap<i64, Json> = BTreeMap::new();
    let owned: Vec<Json> = lake.rows.clone();
    for r in support::by_identity(&owned) {
        rows.insert(r["after"]["id"].as_i64().unwrap(), r["after"].clone());
    }
    for source in s.client.query("SELECT id, v, w FROM t", &[]).await.unwrap() {
        let id = i64::from(source.get::<_, i32>(0));
        let row = &rows[&id];
        assert_eq!(row["v"], source.get::<_, String>(1), "row {id}");
        let w: Option<i32> = source.get(2);
        assert_eq!(row["w"].as_i64(), w.map(i64::from), "row {id}: {row}");
    }
}

#[tokio::test]
async fn a_lake_ahead_of_its_topic_stops_the_sink_rather_than_rewrite_history() {
    let (s, mut broker, pipeline, mut daemon) =
        one_table("lake_ahead", "CREATE TABLE t (id int PRIMARY KEY)", "").await;
    s.client
        .batch_execute("INSERT INTO t SELECT generate_series(1, 40)")
        .await
        .unwrap();
    let dir = s.lake_dir();
    lake_with_rows(&dir, 40).await;
    assert_eq!(daemon.terminate(), Some(0));
    // The memory engine forgets its topics: capture makes them again, empty, and the lake
    // now holds offsets the topics do not.
    broker.restart();
    let mut capture = start_role(&s, &pipeline, "capture", "capture.log", &[]);
    s.slot_ready(&capture).await;
    let mut sink = start_role(&s, &pipeline, "sink", "sink.log", &[]);
    let code = support::exit_status(&mut sink).await.code();
    assert_eq!(code, Some(1), "log:\n{}", sink.log_text());
    assert!(
        sink.log_text()
            .contains("the lake resumes at offsets the topic does not hold"),
        "log:\n{}",
        sink.log_text()
    );
    assert_eq!(
        read_dir(&dir).rows.len(),
        40,
        "nothing was written over the lake"
    );
    assert_eq!(capture.terminate(), Some(0));
}

fn start_role(s: &Setup, pipeline: &Path, role: &str, log: &str, env: &[(&str, String)]) -> Daemon {
    let state = s.dir.path().join("state");
    Daemon::start_env(
        pipeline,
        &["--state-dir", &state.display().to_string(), "--role", role],
        &s.dir.path().join(log),
        env,
    )
}

#[tokio::test]
async fn kill_9_of_the_sink_half_loses_nothing_and_writes_no_object_twice() {
    let s = Setup::lake_filled("lake_kill").await;
    // The durable engine: a restarted batcher fetches from inside a record batch, which the
    // memory engine gets wrong (see the README).
    let broker = Broker::start(Engine::Sqlite);
    let pipeline = s.lake_pipeline(&broker.brokers());
    let mut capture = start_role(&s, &pipeline, "capture", "capture.log", &[]);
    s.slot_ready(&capture).await;
    let mut sink = start_role(&s, &pipeline, "sink", "sink.log", &[]);
    let load = loadgen_spawn(&s.db.url, 150, "16s");
    notes_workload(&s.client).await;
    // Kill at moments no test can line up with the batcher's own clock.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for _ in 0..4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pause = Duration::from_millis(1500 + (seed >> 33) % 3000);
        tokio::time::sleep(pause).await;
        sink.kill9();
        sink = start_role(&s, &pipeline, "sink", "sink.log", &[]);
    }
    finish(load);
    let dir = s.lake_dir();
    lake_equals_source(|| read_dir(&dir), &s.client, &sink).await;
    let lake = read_dir(&dir);
    let held = lake.assert_consistent();
    every_offset_is_in_the_lake(&pipeline, &held).await;

    // The broker's committed offsets play no part in where the sink resumes: under a new
    // consumer group (as after a crash between an upload and its commit), it writes nothing.
    assert_eq!(sink.terminate(), Some(0), "log:\n{}", sink.log_text());
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        yaml.replace("batcher:\n", "batcher:\n  consumer_group: a-new-group\n"),
    )
    .unwrap();
    let mut again = start_role(&s, &pipeline, "sink", "sink-again.log", &[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(again.terminate(), Some(0), "log:\n{}", again.log_text());
    let after = read_dir(&dir);
    let objects = |l: &Lake| -> Vec<(String, u64)> {
        l.objects
            .iter()
            .map(|o| {
                (
                    o["key"].as_str().unwrap().to_owned(),
                    o["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        objects(&after),
        objects(&lake),
        "a sink under a new consumer group wrote objects again; log:\n{}",
        again.log_text()
    );
    after.assert_consistent();
    assert_eq!(capture.terminate(), Some(0), "log:\n{}", capture.log_text());
}

#[tokio::test]
async fn two_sink_processes_share_the_partitions_and_write_one_lake() {
    let s = Setup::lake_filled("lake_share").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.lake_pipeline(&broker.brokers());
    let mut capture = start_role(&s, &pipeline, "capture", "capture.log", &[]);
    s.slot_ready(&capture).await;
    let ports = [support::kafka::free_port(), support::kafka::free_port()];
    let start_share = |share: &str, port: u16, log: &str| {
        Daemon::start_env(
            &pipeline,
            &[
                "--role",
                "sink",
                "--sink-share",
                share,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
            &s.dir.path().join(log),
            &[],
        )
    };
    let mut first = start_share("0/2", ports[0], "sink-0.log");
    let mut second = start_share("1/2", ports[1], "sink-1.log");
    let load = loadgen_spawn(&s.db.url, 300, "8s");
    notes_workload(&s.client).await;
    finish(load);
    let dir = s.lake_dir();
    lake_equals_source(|| read_dir(&dir), &s.client, &first).await;
    let lake = read_dir(&dir);
    let held = lake.assert_consistent();
    every_offset_is_in_the_lake(&pipeline, &held).await;
    // Between them the two read each record once: no partition was read by both.
    let each: Vec<f64> = ports
        .iter()
        .map(|p| {
            support::scrape(*p)
                .lines()
                .filter(|l| l.starts_with("freshet_batcher_records_consumed_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .collect();
    assert!(
        each.iter().all(|n| *n > 0.0),
        "both sinks consumed: {each:?}"
    );
    let consumed: f64 = each.iter().sum();
    let mut in_kafka = 0;
    for table in TABLES {
        in_kafka += topic_lines(&pipeline, table).await.len();
    }
    assert_eq!(
        consumed as usize, in_kafka,
        "records consumed by the two sinks"
    );
    for sink in [&mut first, &mut second, &mut capture] {
        assert_eq!(sink.terminate(), Some(0), "log:\n{}", sink.log_text());
    }
}

#[tokio::test]
async fn an_s3_outage_of_60s_loses_nothing_and_the_sink_catches_up_by_itself() {
    let s = Setup::lake_filled("lake_s3").await;
    let s3 = MotoS3::start();
    s3.create_bucket("lake");
    let proxy_port = support::kafka::free_port();
    let proxy = Proxy::start(proxy_port, s3.port).await;
    let broker = Broker::start(Engine::Memory);
    let s3_yaml = format!(
        "  s3:\n    endpoint: http://127.0.0.1:{proxy_port}\n    path_style: true\n    region: us-east-1\n"
    );
    let pipeline = s.kafka_pipeline(
        &TABLES,
        &broker.brokers(),
        &format!("{EAV}{}", batcher_yaml("s3://lake/cdc", &s3_yaml)),
        true,
    );
    let (mut daemon, metrics_port) = s.start_listening(&pipeline, &s3.env());
    s.slot_ready(&daemon).await;
    let load = loadgen_spawn(&s.db.url, 200, "70s");
    notes_workload(&s.client).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set(Mode::Refuse);
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set(Mode::Forward);
    finish(load);
    lake_equals_source(|| read_s3(&s3, "lake", "cdc/"), &s.client, &daemon).await;
    let metrics = support::scrape(metrics_port);
    let store_event = |kind: &str| support::events(&metrics, kind, "store");
    let (stalled, recovered) = (store_event("stalled"), store_event("recovered"));
    assert!(
        stalled >= 1.0 && recovered >= 1.0,
        "the outage and its end are events: stalled {stalled}, recovered {recovered}\n{metrics}"
    );
    assert!(
        support::sample(&metrics, "freshet_batcher_files_written_total").is_some(),
        "{metrics}"
    );
    assert!(
        daemon.running(),
        "the process rode the outage out; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lake = read_s3(&s3, "lake", "cdc/");
    let held = lake.assert_consistent();
    every_offset_is_in_the_lake(&pipeline, &held).await;
    for m in &lake.manifests {
        let url = m["doc"]["entries"][0]["url"].as_str().unwrap();
        assert!(url.starts_with("s3://lake/cdc/"), "{url}");
    }
}
