//! Freshet's records as the consumers users run read them: the official Confluent Python
//! client consumes the topics and fastavro decodes the records (both from PyPI, in the
//! virtual environment `scripts/install.sh` makes). Freshet's own decoder plays no part.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value as Json;
use support::kafka::{Broker, Engine};
use support::Setup;

/// Runs a consumer script of `tests/consumers/` and parses its JSON lines.
fn consume(script: &str, args: &[&str]) -> Vec<Json> {
    let venv = std::env::var("FRESHET_VENV").unwrap_or_else(|_| {
        panic!("FRESHET_VENV is not set: run the tests with scripts/test.sh, which installs it")
    });
    let out = Command::new(format!("{venv}/bin/python"))
        .arg(support::repo().join("tests/consumers").join(script))
        .args(args)
        .output()
        .expect("run the consumer");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `freshet run` streaming `table` (no snapshot) into `broker`, the pipeline file's kafka
/// section followed by `extra`; returns once the slot streams.
async fn stream(s: &Setup, table: &str, broker: &Broker, extra: &str) -> support::Daemon {
    let pipeline = s.dir.path().join("pipeline.yaml");
    let yaml = support::kafka::pipeline_yaml(
        &s.db.url,
        &s.slot,
        &s.slot,
        &[table],
        &broker.brokers(),
        extra,
    )
    .replace("source:\n", "source:\n  snapshot: { mode: never }\n");
    std::fs::write(&pipeline, yaml).unwrap();
    let daemon = support::kafka::daemon(
        &pipeline,
        &s.dir.path().join("state"),
        &s.dir.path().join("freshet.log"),
    );
    s.slot_ready(&daemon).await;
    daemon
}

#[tokio::test]
async fn registry_less_records_decode_with_fastavro_by_their_canonical_fingerprint_and_deletes_leave_tombstones(
) {
    let s = Setup::new(
        "consumers_single",
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(10,2), at timestamp(3))",
    )
    .await;
    s.publish("t").await;
    let broker = Broker::start(Engine::Memory);
    let mut daemon = stream(&s, "public.t", &broker, "").await;
    // The second version differs from the first only in a semantic type (timestamp(3) is
    // Debezium's millisecond Timestamp, timestamp(6) its MicroTimestamp, both longs): the
    // same Parsing Canonical Form, so Freshet must give it a record name of its own for its
    // fingerprint to be unique.
    for sql in [
        "INSERT INTO t VALUES (1, 'one', 1.50, '2026-01-02 03:04:05.123'), (2, NULL, -2.25, NULL)",
        "ALTER TABLE t ALTER COLUMN at TYPE timestamp(6)",
        "INSERT INTO t VALUES (3, 'three', 3.00, '2026-01-02 03:04:05')",
        "DELETE FROM t WHERE id = 2",
    ] {
        s.client.batch_execute(sql).await.unwrap();
    }
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());

    let records = consume(
        "single_object.py",
        &[
            &broker.brokers(),
            &format!("{}.public.t", s.slot),
            &format!("{}._schemas", s.slot),
            "5",
        ],
    );
    assert_eq!(records.len(), 5, "{records:?}");
    // The delete, then its tombstone: the same key, no value, next on the same partition.
    let delete = records
        .iter()
        .find(|r| r["value"]["record"]["op"] == "d")
        .expect("the delete");
    assert_eq!(delete["value"]["record"]["before"]["id"], 2);
    let tombstone = records
        .iter()
        .find(|r| r["value"].is_null())
        .expect("a tombstone");
    assert_eq!(tombstone["key"], delete["key"]);
    assert_eq!(tombstone["partition"], delete["partition"]);
    assert_eq!(
        tombstone["offset"].as_i64(),
        delete["offset"].as_i64().map(|o| o + 1)
    );
    let mut rows = BTreeMap::new();
    let mut envelopes = std::collections::BTreeSet::new();
    for r in records.iter().filter(|r| r["value"]["record"]["op"] == "c") {
        let value = &r["value"];
        envelopes.insert(value["schema"].as_str().unwrap().to_owned());
        let after = &value["record"]["after"];
        let id = after["id"].as_i64().unwrap();
        assert_eq!(r["key"]["record"]["id"], id, "{r}");
        rows.insert(
            id,
            (after["v"].clone(), after["n"].clone(), after["at"].clone()),
        );
    }
    assert_eq!(
        rows,
        BTreeMap::from([
            (
                1,
                (
                    Json::from("one"),
                    Json::from("1.50"),
                    Json::from(1_767_323_045_123i64)
                )
            ),
            (2, (Json::Null, Json::from("-2.25"), Json::Null)),
            (
                3,
                (
                    Json::from("three"),
                    Json::from("3.00"),
                    Json::from(1_767_323_045_000_000i64)
                )
            ),
        ])
    );
    assert_eq!(
        envelopes.len(),
        2,
        "two envelope versions, two names: {envelopes:?}"
    );
}

/// Which framing the pipeline writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// Confluent wire format against the registry stand-in.
    Registry,
    /// Avro single-object encoding, schemas in the schema topic.
    SingleObject,
}

/// A mixed workload on every type the test table has, read back by `debezium.py`: once with
/// a reader schema written by hand from Debezium's documentation, once with the writer's.
async fn debezium_consumers_read_every_change(framing: Framing) {
    let s = Setup::new(
        "consumers_debezium",
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE types (
             id int PRIMARY KEY, b bool, i2 int2, i8 int8 NOT NULL, f4 real, f8 float8,
             n numeric, n2 numeric(12,3), m money, t text, big text, by bytea,
             d date, tm time, ts timestamp, tz timestamptz, iv interval, u uuid, j json,
             jb jsonb, e mood, ai int[], at text[], bits bit(3), ttz timetz, inet inet)",
    )
    .await;
    s.publish("types").await;
    // Stands in for Confluent Schema Registry (none can run here): a fake of its REST
    // subset over real HTTP, with real BACKWARD checks; see tests/support/registry.rs.
    let registry = match framing {
        Framing::Registry => Some(support::registry::FakeRegistry::start().await),
        Framing::SingleObject => None,
    };
    let broker = Broker::start(Engine::Memory);
    let mut extra = String::new();
    if let Some(r) = &registry {
        extra.push_str(&format!("  schema_registry:\n    url: {}\n", r.url));
    }
    extra.push_str("transform:\n  provide_transaction_metadata: true\n");
    let mut daemon = stream(&s, "public.types", &broker, &extra).await;
    // Six transactions. The big text is stored out of line (TOAST), so the update that
    // leaves it alone does not resend it.
    for sql in [
        "INSERT INTO types VALUES
           (1, true, -32768, 9007199254740993, 1.5, -2.25, 12.340, -123456789.125, 1234.50,
            'plain', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g),
            '\\x00ff10', '2026-01-02', '23:59:59.999999', '2026-01-02 03:04:05.123456',
            '2026-01-02 03:04:05.123456+02', '1 day 02:00:00',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{\"b\": [1, 2]}', 'happy',
            '{1,NULL,3}', '{x,y}', B'101', '12:00:00+02', '10.0.0.1/8'),
           (2, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         INSERT INTO types (id, i8, t, big) VALUES (3, 3, '__debezium_unavailable_value', 'short')",
        "UPDATE types SET b = false WHERE id = 1",
        "UPDATE types SET id = 20 WHERE id = 2",
        "DELETE FROM types WHERE id = 3",
        "INSERT INTO types (id, i8, n, d, ts, tz) VALUES (4, 4, 'NaN', 'infinity', '-infinity', 'infinity')",
        "TRUNCATE types",
    ] {
        s.client.batch_execute(sql).await.unwrap();
    }
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());

    let (mode, where_) = match &registry {
        Some(r) => ("registry", r.url.clone()),
        None => ("single", format!("{}._schemas", s.slot)),
    };
    // 3 creates; the update; the key change's delete, tombstone and create; the delete and
    // its tombstone; a create; the truncate. BEGIN and END of six transactions.
    let lines = consume(
        "debezium.py",
        &[mode, &broker.brokers(), &s.slot, &where_, "11", "12"],
    );
    let topic = format!("{}.public.types", s.slot);
    let mut table: Vec<&Json> = lines
        .iter()
        .filter(|l| l["topic"] == topic.as_str())
        .collect();
    let txns: Vec<&Json> = lines
        .iter()
        .filter(|l| l["topic"] != topic.as_str())
        .collect();
    assert_eq!((table.len(), txns.len()), (11, 12), "{lines:#?}");
    table.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
    let op = |l: &Json| l["debezium"]["op"].as_str().map(str::to_owned);
    let creates: Vec<&Json> = table
        .iter()
        .copied()
        .filter(|l| op(l).as_deref() == Some("c"))
        .collect();
    let row1 = creates
        .iter()
        .find(|l| l["key"]["id"] == 1)
        .expect("row 1's create");

    // Row 1 under Debezium's documented mapping, column by column.
    let after = &row1["debezium"]["after"];
    let expect = serde_json::json!({
        "id": 1, "b": true, "i2": -32768, "i8": 9007199254740993i64, "f4": 1.5, "f8": -2.25,
        "n": {"scale": 2, "value": {"base64": "BNI="}},
        "n2": "-123456789.125", "m": "1234.50", "t": "plain",
        "by": {"base64": "AP8Q"}, "d": 20455, "tm": 86_399_999_999i64,
        "ts": 1_767_323_045_123_456i64, "tz": "2026-01-02T01:04:05.123456Z",
        "iv": 93_600_000_000i64, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": "{\"a\": 1}", "jb": "{\"b\": [1, 2]}", "e": "happy", "ai": [1, null, 3],
        "at": ["x", "y"], "bits": {"base64": "BQ=="}, "ttz": "10:00:00Z", "inet": "10.0.0.1/8"
    });
    for (column, want) in expect.as_object().unwrap() {
        assert_eq!(&after[column], want, "column {column}: {after}");
    }
    assert_eq!(after["big"].as_str().map(str::len), Some(96_000));
    let source = &row1["debezium"]["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], s.slot.as_str());
    assert_eq!(source["db"], s.db.name.as_str());
    assert_eq!(
        (source["schema"].as_str(), source["table"].as_str()),
        (Some("public"), Some("types"))
    );
    assert_eq!(source["snapshot"], "false");
    assert!(source["lsn"].as_i64().is_some() && source["txId"].as_i64().is_some());
    assert!(
        source["sequence"].as_str().unwrap().starts_with('['),
        "{source}"
    );
    // Freshet's field: numeric 12.340 keeps its display scale there, nothing is unchanged.
    let freshet = &row1["freshet"];
    assert_eq!(freshet["after"]["unchanged"], serde_json::json!([]));
    assert_eq!(freshet["after"]["exact"]["n"], "12.340");
    assert_eq!(freshet["after"]["exact"]["m"], "$1,234.50");

    // The row of NULLs: null columns, and i8 (NOT NULL) a plain long.
    let row2 = creates.iter().find(|l| l["key"]["id"] == 2).expect("row 2");
    assert_eq!(row2["debezium"]["after"]["i8"], 0);
    assert!(row2["debezium"]["after"]["b"].is_null() && row2["debezium"]["after"]["n"].is_null());
    // A text equal to the placeholder is a value: not listed as unchanged.
    let row3 = creates.iter().find(|l| l["key"]["id"] == 3).expect("row 3");
    assert_eq!(
        row3["debezium"]["after"]["t"],
        "__debezium_unavailable_value"
    );
    assert_eq!(row3["freshet"]["after"]["unchanged"], serde_json::json!([]));

    // The update that leaves the TOASTed column alone: the placeholder in the column, the
    // column listed, the same key bytes as the insert's.
    let update = table
        .iter()
        .find(|l| op(l).as_deref() == Some("u"))
        .expect("the update");
    assert_eq!(
        update["debezium"]["after"]["big"],
        "__debezium_unavailable_value"
    );
    assert_eq!(update["debezium"]["after"]["b"], false);
    assert_eq!(
        update["freshet"]["after"]["unchanged"],
        serde_json::json!(["big"])
    );
    assert_eq!(update["key_bytes"], row1["key_bytes"]);
    assert_eq!(update["partition"], row1["partition"]);

    // The key change: a delete on key 2, its tombstone, a create on key 20, on the keys'
    // partitions, with Debezium's headers holding the other key's bytes.
    let partition_of = |l: &Json| {
        let key = hex(l["key_bytes"].as_str().unwrap());
        i64::from(freshet::kafka::partition::for_key(&key, 4))
    };
    let moved: Vec<&Json> = table
        .iter()
        .copied()
        .filter(|l| {
            l["headers"].get("__debezium.newkey").is_some()
                || l["headers"].get("__debezium.oldkey").is_some()
        })
        .collect();
    assert_eq!(moved.len(), 3, "{moved:#?}");
    let find = |want: Option<&str>| {
        *moved
            .iter()
            .find(|l| op(l).as_deref() == want)
            .expect("each once")
    };
    let (delete, tombstone, create) = (find(Some("d")), find(None), find(Some("c")));
    assert_eq!(op(delete).as_deref(), Some("d"));
    assert_eq!(delete["debezium"]["before"]["id"], 2);
    assert!(tombstone["debezium"].is_null());
    assert_eq!(tombstone["key_bytes"], delete["key_bytes"]);
    assert_eq!(
        tombstone["offset"].as_i64(),
        delete["offset"].as_i64().map(|o| o + 1)
    );
    assert_eq!(op(create).as_deref(), Some("c"));
    assert_eq!(create["key"]["id"], 20);
    assert_eq!(delete["headers"]["__debezium.newkey"], create["key_bytes"]);
    assert_eq!(create["headers"]["__debezium.oldkey"], delete["key_bytes"]);
    for l in [delete, tombstone, create] {
        assert_eq!(l["partition"].as_i64(), Some(partition_of(l)), "{l}");
        assert_eq!(
            l["headers"]["freshet.lsn"],
            delete["headers"]["freshet.lsn"]
        );
    }
    // Every delete is followed by its tombstone on the same partition.
    for d in table.iter().filter(|l| op(l).as_deref() == Some("d")) {
        let next = table
            .iter()
            .find(|l| {
                l["partition"] == d["partition"]
                    && l["offset"].as_i64() == d["offset"].as_i64().map(|o| o + 1)
            })
            .expect("a record after the delete");
        assert!(
            next["debezium"].is_null() && next["key_bytes"] == d["key_bytes"],
            "{next}"
        );
    }
    // NaN and the infinities: Debezium's forms in the columns, the exact texts beside them.
    let row4 = creates.iter().find(|l| l["key"]["id"] == 4).expect("row 4");
    assert!(
        row4["debezium"]["after"]["n"].is_null(),
        "precise decimals have no NaN"
    );
    assert_eq!(row4["debezium"]["after"]["tz"], "infinity");
    assert_eq!(
        row4["debezium"]["after"]["ts"],
        -9_223_372_036_832_400_000i64
    );
    let exact = &row4["freshet"]["after"]["exact"];
    assert_eq!(
        (
            exact["n"].as_str(),
            exact["d"].as_str(),
            exact["ts"].as_str(),
            exact["tz"].as_str()
        ),
        (
            Some("NaN"),
            Some("infinity"),
            Some("-infinity"),
            Some("infinity")
        )
    );
    // One `t` for the TRUNCATE, without a key.
    let truncates: Vec<&Json> = table
        .iter()
        .copied()
        .filter(|l| op(l).as_deref() == Some("t"))
        .collect();
    assert_eq!(truncates.len(), 1);
    assert!(truncates[0]["key_bytes"].is_null());

    // The transaction topic: BEGIN and END per transaction, END's counts those of the
    // table topic's events (tombstones are not events), the envelope's block naming it.
    let mut events: BTreeMap<String, i64> = BTreeMap::new();
    for l in table.iter().filter(|l| !l["debezium"].is_null()) {
        let id = l["debezium"]["transaction"]["id"]
            .as_str()
            .expect("a transaction block")
            .to_owned();
        *events.entry(id).or_default() += 1;
    }
    let ends: BTreeMap<String, i64> = txns
        .iter()
        .filter(|l| l["debezium"]["status"] == "END")
        .map(|l| {
            let v = &l["debezium"];
            let per_table = &v["data_collections"][0];
            assert_eq!(per_table["data_collection"], "public.types");
            assert_eq!(per_table["event_count"], v["event_count"]);
            (
                v["id"].as_str().unwrap().to_owned(),
                v["event_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ends, events);
    assert_eq!(
        ends.values()
            .copied()
            .collect::<Vec<_>>()
            .iter()
            .sum::<i64>(),
        9
    );
    assert_eq!(
        txns.iter()
            .filter(|l| l["debezium"]["status"] == "BEGIN")
            .count(),
        6
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Multi-threaded: the registry stand-in serves the consumer from this runtime while the test
// waits for the consumer process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_consumers_read_registry_framed_records_with_confluent_s_deserializer() {
    debezium_consumers_read_every_change(Framing::Registry).await;
}

#[tokio::test]
async fn debezium_consumers_read_single_object_records_by_their_fingerprint() {
    debezium_consumers_read_every_change(Framing::SingleObject).await;
}
