//! Capture end to end against a real PostgreSQL 15: `freshet run --output jsonl:…` as a child
//! process, rows written with SQL, the captured lines compared with the source row by row.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use support::types::{after, assert_types, same, EXPECTED_SQL, TYPES_DDL, TYPE_ROWS};
use support::{Daemon, Setup};

impl Setup {
    fn pipeline(&self, tables: &[&str]) -> PathBuf {
        let path = self.dir.path().join("pipeline.yaml");
        // Streaming only: these tests write after the start, and a concurrent initial
        // snapshot would add `r` copies of the same rows (the snapshot tests cover those).
        let yaml = support::pipeline_yaml(&self.db.url, &self.slot, &self.slot, tables, "1s")
            .replace("source:\n", "source:\n  snapshot: { mode: never }\n");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("changes.jsonl")
    }

    fn start(&self, tables: &[&str]) -> Daemon {
        Daemon::start(
            &self.pipeline(tables),
            &self.output(),
            &self.dir.path().join("freshet.log"),
        )
    }

    async fn lines(&self, at_least: usize, daemon: &Daemon) -> Vec<Json> {
        let output = self.output();
        support::wait_for(
            &format!("{at_least} captured lines; log:\n{}", daemon.log_text()),
            Duration::from_secs(120),
            || {
                let output = output.clone();
                async move {
                    let lines = support::read_jsonl(&output);
                    (lines.len() >= at_least).then_some(lines)
                }
            },
        )
        .await
    }
}

#[tokio::test]
async fn every_type_round_trips_field_by_field() {
    let s = Setup::new("cap_types", "").await;
    s.client
        .batch_execute(&TYPES_DDL.replace("PUB_PLACEHOLDER", &s.slot))
        .await
        .unwrap();
    let mut daemon = s.start(&["public.all_types", r#"public."Odd ""Table""""#]);
    s.slot_ready(&daemon).await;
    s.client.batch_execute(TYPE_ROWS).await.unwrap();

    let lines = s.lines(6, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    // PostgreSQL's own rendering of each column, in the mapping the jsonl output promises:
    // to_jsonb for JSON-native types, the text output (in UTC) for exact or temporal ones.
    s.client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    let rows = s.client.query(EXPECTED_SQL, &[]).await.unwrap();
    let captured: Vec<&Json> = lines.iter().filter(|l| l["table"] == "all_types").collect();
    assert_eq!(captured.len(), 4);
    assert!(captured.iter().all(|l| l["op"] == "c"));
    assert_types(&captured, &rows);
    let odd: Vec<&Json> = lines
        .iter()
        .filter(|l| l["table"] == "Odd \"Table\"")
        .collect();
    assert_eq!(odd.len(), 2);
    assert_eq!(after(odd[0]).get("Key Col"), Some(&Json::from(1)));
    assert_eq!(after(odd[0]).get("väl"), Some(&Json::from("ärger")));
    assert_eq!(after(odd[1]).get("väl"), Some(&Json::Null));
    // One transaction per INSERT statement: identities are (commit lsn, seq) with seq from 0.
    assert_eq!(
        captured
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(captured.iter().all(|l| l["lsn"] == captured[0]["lsn"]));
}

#[tokio::test]
async fn snapshot_reads_every_type_as_the_stream_does() {
    let s = Setup::new("cap_types_snap", "").await;
    s.client
        .batch_execute(&TYPES_DDL.replace("PUB_PLACEHOLDER", &s.slot))
        .await
        .unwrap();
    s.client.batch_execute(TYPE_ROWS).await.unwrap();
    let path = s.dir.path().join("pipeline.yaml");
    let yaml = support::pipeline_yaml(
        &s.db.url,
        &s.slot,
        &s.slot,
        &["public.all_types", r#"public."Odd ""Table""""#],
        "1s",
    );
    std::fs::write(&path, yaml).unwrap();
    let mut daemon = Daemon::start(&path, &s.output(), &s.dir.path().join("freshet.log"));
    let lines = s.lines(6, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    s.client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    let rows = s.client.query(EXPECTED_SQL, &[]).await.unwrap();
    let captured: Vec<&Json> = lines.iter().filter(|l| l["table"] == "all_types").collect();
    assert_eq!(captured.len(), 4);
    assert!(captured.iter().all(|l| l["op"] == "r"), "snapshot reads");
    assert_types(&captured, &rows);
    let odd: Vec<&Json> = lines
        .iter()
        .filter(|l| l["table"] == "Odd \"Table\"")
        .collect();
    assert_eq!(odd.len(), 2);
    assert_eq!(after(odd[0]).get("väl"), Some(&Json::from("ärger")));
}

#[tokio::test]
async fn updates_deletes_identities_and_unchanged_toast() {
    let ddl = "CREATE TABLE keyed (id int PRIMARY KEY, small int, big text);
               CREATE TABLE full_row (id int, small int, big text);
               ALTER TABLE full_row REPLICA IDENTITY FULL;
               ALTER TABLE keyed ALTER COLUMN big SET STORAGE EXTERNAL;";
    let s = Setup::new("cap_identity", ddl).await;
    s.publish("keyed, full_row").await;
    let mut daemon = s.start(&["public.keyed", "public.full_row"]);
    s.slot_ready(&daemon).await;
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    s.client
        .execute(
            "INSERT INTO keyed VALUES (1, 10, $1), (2, 20, 'short')",
            &[&big],
        )
        .await
        .unwrap();
    s.client
        .batch_execute(
            "UPDATE keyed SET small = 11 WHERE id = 1;
             UPDATE keyed SET id = 3 WHERE id = 2;
             DELETE FROM keyed WHERE id = 3;
             INSERT INTO full_row VALUES (1, 5, 'x');
             UPDATE full_row SET small = 6;
             DELETE FROM full_row;
             TRUNCATE keyed;",
        )
        .await
        .unwrap();
    let lines = s.lines(9, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    let ops: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["table"].as_str().unwrap(), l["op"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("keyed", "c"),
            ("keyed", "c"),
            ("keyed", "u"),
            ("keyed", "u"),
            ("keyed", "d"),
            ("full_row", "c"),
            ("full_row", "u"),
            ("full_row", "d"),
            ("keyed", "t")
        ]
    );
    // The TOASTed column the update left alone is reported as unchanged, not as NULL.
    let toast = &lines[2];
    assert_eq!(toast["unchanged"], serde_json::json!(["big"]), "{toast}");
    assert!(after(toast).get("big").is_none(), "{toast}");
    assert_eq!(after(toast)["small"], 11);
    assert_eq!(after(&lines[0])["big"].as_str().map(str::len), Some(20_000));
    // DEFAULT identity: a key change carries the old key; the delete carries the key only.
    assert_eq!(
        lines[3]["before"],
        serde_json::json!({"id": 2, "small": null, "big": null})
    );
    assert_eq!(after(&lines[3])["id"], 3);
    assert_eq!(lines[4]["before"]["id"], 3);
    // FULL identity: the whole old row.
    assert_eq!(
        lines[6]["before"],
        serde_json::json!({"id": 1, "small": 5, "big": "x"})
    );
    assert_eq!(
        lines[7]["before"],
        serde_json::json!({"id": 1, "small": 6, "big": "x"})
    );
    assert!(lines[8]["before"].is_null() && lines[8]["after"].is_null());
}

#[tokio::test]
async fn big_and_interleaved_transactions_come_out_whole_in_commit_order() {
    let s = Setup::new(
        "cap_order",
        "CREATE TABLE t (id bigint PRIMARY KEY, who text)",
    )
    .await;
    s.publish("t").await;
    let mut daemon = s.start(&["public.t"]);
    s.slot_ready(&daemon).await;

    // A and B interleave; B commits first, so B comes out first.
    let a = s.db.client().await;
    let b = s.db.client().await;
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    b.batch_execute("BEGIN; INSERT INTO t VALUES (2, 'b')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t VALUES (3, 'a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO t VALUES (4, 'b'); COMMIT")
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    // 200k rows in one transaction.
    s.client
        .batch_execute("INSERT INTO t SELECT g, 'big' FROM generate_series(100, 200099) g")
        .await
        .unwrap();

    let lines = s.lines(200_004, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(lines.len(), 200_004);
    let who: Vec<&str> = lines[..4]
        .iter()
        .map(|l| after(l)["who"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["b", "b", "a", "a"]);
    let ids: Vec<i64> = lines[..4]
        .iter()
        .map(|l| after(l)["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 4, 1, 3]);
    let big = &lines[4..];
    assert!(big
        .iter()
        .all(|l| l["lsn"] == big[0]["lsn"] && l["xid"] == big[0]["xid"]));
    assert!(big
        .iter()
        .enumerate()
        .all(|(i, l)| l["seq"] == i as u64 && after(l)["id"] == 100 + i as i64));
    let lsn = |l: &Json| l["lsn"].as_str().unwrap().to_string();
    assert!(support::lsn_ge(&lsn(&lines[2]), &lsn(&lines[0])) && lsn(&lines[2]) != lsn(&lines[0]));
}

async fn source_state(
    client: &tokio_postgres::Client,
    keys: &HashMap<&str, Vec<&str>>,
) -> BTreeMap<String, BTreeMap<String, Json>> {
    let mut state = BTreeMap::new();
    for (table, key) in keys {
        let rows = client
            .query(
                &format!("SELECT to_jsonb(t)::text FROM atlasco.{table} t"),
                &[],
            )
            .await
            .unwrap();
        let mut map = BTreeMap::new();
        for r in rows {
            let row: Json = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
            let k = key
                .iter()
                .map(|c| row[*c].to_string())
                .collect::<Vec<_>>()
                .join(",");
            map.insert(k, row);
        }
        state.insert(table.to_string(), map);
    }
    state
}

/// Values compared on what both sides render the same way: timestamps are compared as
/// instants, everything else as JSON.
fn normalise(state: &mut BTreeMap<String, BTreeMap<String, Json>>) {
    for rows in state.values_mut() {
        for row in rows.values_mut() {
            for (column, v) in row.as_object_mut().unwrap().iter_mut() {
                if let Some(s) = v.as_str() {
                    if column.ends_with("_at") || column == "timestamp_value" {
                        let t = chrono::DateTime::parse_from_rfc3339(
                            &s.replace(' ', "T")
                                .replace("+00", "+00:00")
                                .replace("+00:00:00", "+00:00"),
                        )
                        .map(|t| t.timestamp_micros())
                        .unwrap_or_else(|e| panic!("{column}: {s:?}: {e}"));
                        *v = Json::from(t);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_and_invents_nothing() {
    let s = Setup::new("cap_kill", "").await;
    s.client
        .batch_execute(&support::schema_sql())
        .await
        .unwrap();
    // The schema's publication has a fixed name; this test's slot is its own.
    let pipeline = s.dir.path().join("pipeline.yaml");
    let yaml = support::pipeline_yaml(
        &s.db.url,
        &s.slot,
        "freshet_atlasco",
        &[
            "atlasco.tenants",
            "atlasco.attributes",
            "atlasco.entities",
            "atlasco.entity_values",
        ],
        "1s",
    );
    std::fs::write(&pipeline, yaml).unwrap();
    let log = s.dir.path().join("freshet.log");
    let mut daemon = Daemon::start(&pipeline, &s.output(), &log);
    s.slot_ready(&daemon).await;

    let config = s.db.config();
    let fill = freshet::loadgen::FillOptions {
        tenants: 2,
        entities_per_tenant: 100,
        attributes_per_entity: 10,
        catalog_size: 50,
        seed: 4,
        jobs: 1,
    };
    freshet::loadgen::fill(&config, &fill).await.unwrap();
    let (stop_load, load_stop) = tokio::sync::watch::channel(false);
    let opts = freshet::loadgen::RunOptions {
        rate: 1500,
        duration: Some(Duration::from_secs(60)),
        connections: 2,
        seed: 8,
    };
    let load = tokio::spawn(async move { freshet::loadgen::run(&config, &opts, load_stop).await });

    let mut rng_state = 0x2545F4914F6CDD1Du64;
    for round in 0..4 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let wait = Duration::from_millis(800 + rng_state % 2500);
        tokio::time::sleep(wait).await;
        daemon.kill9();
        eprintln!(
            "round {round}: killed after {wait:?}, {} lines so far",
            support::read_jsonl(&s.output()).len()
        );
        daemon = Daemon::start(&pipeline, &s.output(), &log);
    }
    let _ = stop_load.send(true);
    let report = load.await.unwrap().unwrap();
    assert!(report.rows > 1000, "{report}");

    // Catch up to the end of the WAL, then stop cleanly.
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    let keys = HashMap::from([
        ("tenants", vec!["tenant_id"]),
        ("attributes", vec!["attribute_id"]),
        ("entities", vec!["tenant_id", "entity_id"]),
        (
            "entity_values",
            vec!["tenant_id", "entity_id", "attribute_id"],
        ),
    ]);
    let lines = support::read_jsonl(&s.output());
    let mut captured = support::replay(&lines, |t| keys[t].clone(), true);
    let mut source = source_state(&s.client, &keys).await;
    normalise(&mut captured);
    normalise(&mut source);
    for (table, rows) in &source {
        let got = captured.get(table).cloned().unwrap_or_default();
        assert_eq!(got.len(), rows.len(), "{table}: row count");
        for (key, row) in rows {
            let have = got
                .get(key)
                .unwrap_or_else(|| panic!("{table} {key}: missing from the capture"));
            assert!(
                same(have, row),
                "{table} {key}: captured {have} but the source has {row}"
            );
        }
    }
    let log_text = daemon.log_text();
    assert!(
        log_text.contains("resume_from"),
        "the log says where capture resumed:\n{log_text}"
    );
}

#[tokio::test]
async fn idle_published_table_still_advances_the_slot() {
    let s = Setup::new("cap_idle", "CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id serial PRIMARY KEY, v int);").await;
    s.publish("quiet").await;
    let mut daemon = s.start(&["public.quiet"]);
    s.slot_ready(&daemon).await;
    let start = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    // Unpublished writes move the WAL; heartbeats (every second) must carry the slot along.
    for _ in 0..20 {
        s.client
            .batch_execute("INSERT INTO busy (v) SELECT g FROM generate_series(1, 500) g")
            .await
            .unwrap();
    }
    support::caught_up(&s.client, &s.slot, &daemon).await;
    let confirmed = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    assert!(support::lsn_ge(&confirmed, &start) && confirmed != start);
    assert_eq!(daemon.terminate(), Some(0));
    assert!(
        support::read_jsonl(&s.output()).is_empty(),
        "heartbeats write no change lines"
    );
}

#[tokio::test]
async fn graceful_stop_confirms_and_a_restart_resumes_without_gaps_or_repeats() {
    let s = Setup::new("cap_resume", "CREATE TABLE t (id int PRIMARY KEY)").await;
    s.publish("t").await;
    let mut daemon = s.start(&["public.t"]);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .unwrap();
    s.lines(100, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    let log = daemon.log_text();
    assert!(log.contains("position confirmed"), "{log}");
    // Written while Freshet is down: read after the restart, exactly once.
    s.client
        .batch_execute("INSERT INTO t SELECT generate_series(101, 150)")
        .await
        .unwrap();
    let mut daemon = s.start(&["public.t"]);
    let lines = s.lines(150, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| after(l)["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=150).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_dropped_slot_stops_run_with_a_clear_error() {
    let s = Setup::new("cap_lost", "CREATE TABLE t (id int PRIMARY KEY)").await;
    s.publish("t").await;
    let mut daemon = s.start(&["public.t"]);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    s.lines(1, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    s.client
        .execute("SELECT pg_drop_replication_slot($1)", &[&s.slot])
        .await
        .unwrap();

    let mut daemon = s.start(&["public.t"]);
    let code = support::wait_for("freshet to exit", Duration::from_secs(60), || {
        let status = daemon.child.try_wait().unwrap();
        async move { status.map(|s| s.code()) }
    })
    .await;
    assert_eq!(
        code,
        Some(1),
        "a lost slot needs an operator, not a restart"
    );
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("replication slot {:?} is lost", s.slot)),
        "{log}"
    );
    let recreated = support::confirmed_flush(&s.client, &s.slot).await;
    assert_eq!(recreated, None, "the slot must not be silently recreated");
}

/// Under systemd (`Type=notify`): `READY=1` once capture streams, `WATCHDOG=1` pings while it
/// stays ready, `STATUS=` lines, and `STOPPING=1` when SIGTERM asks it to stop; received on a
/// `NOTIFY_SOCKET` of the test's own, as systemd would.
#[tokio::test]
async fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let s = Setup::new("cap_notify", "CREATE TABLE public.n (id int PRIMARY KEY);").await;
    s.publish("public.n").await;
    let socket_path = s.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let output = s.output();
    let mut daemon = Daemon::start_env(
        &s.pipeline(&["public.n"]),
        &["--output", &format!("jsonl:{}", output.display())],
        &s.dir.path().join("freshet.log"),
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".to_string()),
        ],
    );
    let mut heard: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while heard.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "heard only {heard:?}; log:\n{}",
            daemon.log_text()
        );
        if let Ok(n) = socket.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = heard.iter().position(|m| m == "READY=1").expect("READY=1");
    let first_ping = heard.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready < first_ping, "pinged before ready: {heard:?}");
    assert!(
        heard[..ready].iter().any(|m| m.starts_with("STATUS=")),
        "{heard:?}"
    );
    assert_eq!(heard.iter().filter(|m| *m == "READY=1").count(), 1);
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());
    let mut rest = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        rest.iter().any(|m| m.starts_with("STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {rest:?}"
    );
}
