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

#[tokio::test]
async fn registry_less_records_decode_with_fastavro_by_their_canonical_fingerprint_and_deletes_leave_tombstones(
) {
    let s = Setup::new(
        "consumers_single",
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(10,2), at timestamptz)",
    )
    .await;
    s.publish("t").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.dir.path().join("pipeline.yaml");
    let yaml = support::kafka::pipeline_yaml(
        &s.db.url,
        &s.slot,
        &s.slot,
        &["public.t"],
        &broker.brokers(),
        "",
    )
    .replace("source:\n", "source:\n  snapshot: { mode: never }\n");
    std::fs::write(&pipeline, yaml).unwrap();
    let mut daemon = support::kafka::daemon(
        &pipeline,
        &s.dir.path().join("state"),
        &s.dir.path().join("freshet.log"),
    );
    s.slot_ready(&daemon).await;
    // The second version differs from the first only in a logical type (timestamptz is
    // timestamp-micros, timestamp local-timestamp-micros): the same Parsing Canonical Form, so
    // Freshet must give it a record name of its own for its fingerprint to be unique.
    for sql in [
        "INSERT INTO t VALUES (1, 'one', 1.50, '2026-01-02 03:04:05+00'), (2, NULL, -2.25, NULL)",
        "ALTER TABLE t ALTER COLUMN at TYPE timestamp",
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
                    Json::from("2026-01-02 03:04:05+00:00")
                )
            ),
            (2, (Json::Null, Json::from("-2.25"), Json::Null)),
            (
                3,
                (
                    Json::from("three"),
                    Json::from("3.00"),
                    Json::from("2026-01-02 03:04:05")
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
