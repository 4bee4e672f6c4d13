//! Freshness end to end: PostgreSQL → `freshet run` → Tansu → the lake → the PostgreSQL
//! warehouse, with every table's watermarks per stage read from `/v1/freshness`, the lag
//! gauges and breach counters from `/metrics`, and the loaded watermarks from the
//! warehouse's own table.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::kafka::{Broker, Engine, Mode, Proxy};
use support::warehouse::{wait_equal, warehouse_yaml};
use support::Setup;

const DDL: &str = "
CREATE TABLE public.busy (id int PRIMARY KEY, v text);
CREATE TABLE public.quiet (id int PRIMARY KEY, v text);";
const TABLES: [&str; 2] = ["public.busy", "public.quiet"];
const STAGES: [&str; 4] = ["captured", "kafka", "lake", "loaded"];

async fn setup(prefix: &str) -> Setup {
    let s = Setup::new(prefix, DDL).await;
    s.publish(&TABLES.join(", ")).await;
    s
}

/// Both tables into a local lake (files closed within a second) and on into the warehouse
/// at `warehouse_url`, with a freshness budget of `budget`; heartbeats every second.
fn pipeline(s: &Setup, brokers: &str, warehouse_url: &str, budget: &str) -> PathBuf {
    let lake = s.dir.path().join("lake");
    let extra = format!(
        "batcher:\n  store: file://{}\n  rotation:\n    max_age: 1s\n{}",
        lake.display(),
        warehouse_yaml(warehouse_url, &TABLES, budget)
    );
    s.kafka_pipeline(&TABLES, brokers, &extra, false)
}

/// `/v1/freshness`, table → stage → that stage's object.
fn freshness(port: u16) -> std::collections::BTreeMap<String, Vec<Json>> {
    let (status, body) = support::http_get(port, "/v1/freshness");
    assert_eq!(status, 200, "/v1/freshness: {body}");
    let doc: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    doc["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no tables in {body}"))
        .iter()
        .map(|t| {
            let stages = t["stages"].as_array().expect("stages").clone();
            let names: Vec<&str> = stages
                .iter()
                .map(|s| s["stage"].as_str().unwrap())
                .collect();
            assert_eq!(names, STAGES, "the stages in pipeline order: {body}");
            (t["table"].as_str().expect("table").to_owned(), stages)
        })
        .collect()
}

fn stage<'a>(
    f: &'a std::collections::BTreeMap<String, Vec<Json>>,
    table: &str,
    stage: &str,
) -> &'a Json {
    f[table]
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap_or_else(|| panic!("{table} has no stage {stage}: {f:?}"))
}

/// A sample of `name` with both labels, from a scrape (label order is the exporter's).
fn labelled(metrics: &str, name: &str, table: &str, stage: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            l.contains(&format!("table=\"{table}\"")) && l.contains(&format!("stage=\"{stage}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `public.busy`'s count of breaches at the loaded stage, once counted.
fn busy_loaded_breaches(metrics: &str) -> Option<f64> {
    labelled(
        metrics,
        "freshet_freshness_breaches_total",
        "public.busy",
        "loaded",
    )
}

/// `freshet status --once` against the process on `port`: its exit code and text.
async fn wait_status(port: u16, table: &str, at: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let f = freshness(port);
        if stage(&f, table, at)["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} at {at} not {want} within {timeout:?}: {:?}",
            f[table]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Heartbeats move an idle table's watermarks at every stage: its lag stays near the
/// heartbeat interval instead of growing, and the warehouse records how far it is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tables_lag_stays_near_the_heartbeat_interval_at_every_stage() {
    let s = setup("fr_idle").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = pipeline(&s, &broker.brokers(), &s.db.url, "10s");
    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO public.busy VALUES (1, 'one'); INSERT INTO public.quiet VALUES (1, 'one');")
        .await
        .expect("insert");
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    // Every stage of both tables known and within its budget, soon after.
    for t in TABLES {
        wait_status(port, t, "loaded", "ok", Duration::from_secs(30)).await;
    }

    // Twenty idle seconds: no stage's lag passes a few heartbeats, and the watermarks move.
    let first = freshness(port);
    let mut worst = 0u64;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let f = freshness(port);
        for t in TABLES {
            for at in STAGES {
                let s = stage(&f, t, at);
                assert_eq!(s["status"], "ok", "{t} at {at}: {s}");
                let lag = s["lag_ms"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{t} at {at}: {s}"));
                worst = worst.max(lag);
                assert!(
                    lag <= 5_000,
                    "{t} at {at} is {lag} ms behind though idle: {s}"
                );
            }
        }
    }
    let last = freshness(port);
    for t in TABLES {
        for at in STAGES {
            let (before, after) = (stage(&first, t, at), stage(&last, t, at));
            assert!(
                after["watermark_commit_time"].as_str() > before["watermark_commit_time"].as_str(),
                "{t}'s watermark at {at} did not move in 20 idle seconds: {before} then {after}"
            );
        }
    }
    eprintln!("idle for 20 s: the largest lag seen at any stage was {worst} ms");

    // `freshet status --once` shows the same, for scripts: every stage OK, exit 0.
    let (code, text) = support::status(port, "--once");
    assert_eq!(code, Some(0), "{text}");
    for t in TABLES {
        let row = text
            .lines()
            .find(|l| l.starts_with(t))
            .unwrap_or_else(|| panic!("no row for {t}:\n{text}"));
        assert_eq!(row.matches("OK ").count(), 4, "{row}");
        assert!(row.contains("test") && row.contains("10.0s"), "{row}");
    }

    let metrics = support::scrape(port);
    support::promtool_check_metrics(&metrics);
    let (status, body) = support::http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Json>(&body).expect("json"),
        serde_json::json!({"ready": true, "halves": {"capture": {"ready": true}, "sink": {"ready": true}}}),
    );
    // One insert into each table: one `c` change, and its record's bytes.
    for t in TABLES {
        let changes = format!("freshet_capture_changes_total{{table=\"{t}\",op=\"c\"}} 1\n");
        assert!(metrics.contains(&changes), "no {changes:?} in:\n{metrics}");
        let bytes: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("freshet_capture_bytes_total{{table=\"{t}\"}} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no capture bytes for {t}:\n{metrics}"));
        assert!(bytes > 20.0, "{t}: {bytes} bytes for a row");
    }
    let lag = labelled(
        &metrics,
        "freshet_freshness_lag_seconds",
        "public.quiet",
        "loaded",
    )
    .unwrap_or_else(|| panic!("no loaded lag gauge for public.quiet:\n{metrics}"));
    assert!(lag <= 5.0, "the gauge says {lag} s");
    assert!(
        metrics
            .contains("freshet_freshness_budget_seconds{table=\"public.quiet\",class=\"test\"} 10"),
        "the budget gauge:\n{metrics}"
    );

    // The warehouse knows how far each table is loaded, for readers apart from this process.
    let rows = s
        .client
        .query(
            "SELECT table_name, sink_share, loaded_lsn, extract(epoch FROM now() - loaded_commit_time)::float8 \
             FROM analytics_freshet._freshet_watermarks ORDER BY table_name",
            &[],
        )
        .await
        .expect("the warehouse's watermarks");
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("public.busy".to_owned(), "all".to_owned()),
            ("public.quiet".to_owned(), "all".to_owned())
        ]
    );
    for r in &rows {
        let behind: f64 = r.get(3);
        assert!(
            behind < 15.0,
            "{} recorded as loaded up to {behind} s ago",
            r.get::<_, String>(0)
        );
    }
    drop(daemon);
}

/// The warehouse away: the written table's loaded stage passes its budget (counted once, an
/// event) while its earlier stages, and the idle table's lake stage, stay within theirs;
/// back, it recovers. (The loader waits for the warehouse as a whole, so the idle table's
/// loaded stage may pass its budget too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_load_breaches_the_budget_and_recovers() {
    let s = setup("fr_breach").await;
    let broker = Broker::start(Engine::Memory);
    let pg_port = s.db.config().get_ports()[0];
    let proxy = Proxy::start(support::kafka::free_port(), pg_port).await;
    let through_proxy =
        s.db.url
            .replace(&format!(":{pg_port}/"), &format!(":{}/", proxy.port));
    assert_ne!(through_proxy, s.db.url);
    let pipeline = pipeline(&s, &broker.brokers(), &through_proxy, "4s");
    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO public.busy VALUES (0, 'zero'); INSERT INTO public.quiet VALUES (0, 'zero');")
        .await
        .expect("insert");
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    wait_status(port, "public.busy", "loaded", "ok", Duration::from_secs(30)).await;

    proxy.set(Mode::Refuse);
    let writes = async {
        for i in 1..=20 {
            s.client
                .batch_execute(&format!("INSERT INTO public.busy VALUES ({i}, 'row {i}')"))
                .await
                .expect("insert");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let breach = wait_status(
        port,
        "public.busy",
        "loaded",
        "breach",
        Duration::from_secs(40),
    );
    tokio::join!(writes, breach);
    let f = freshness(port);
    for at in ["captured", "kafka", "lake"] {
        assert_eq!(
            stage(&f, "public.busy", at)["status"],
            "ok",
            "public.busy at {at}: {:?}",
            f["public.busy"]
        );
    }
    assert_eq!(
        stage(&f, "public.quiet", "lake")["status"],
        "ok",
        "{:?}",
        f["public.quiet"]
    );
    let (code, text) = support::status(port, "--once");
    assert_eq!(code, Some(3), "a breach exits 3:\n{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("public.busy"))
        .expect("busy row");
    assert!(row.contains("BREACH"), "{row}");
    let lag = stage(&f, "public.busy", "loaded")["lag_ms"]
        .as_u64()
        .expect("lag");
    assert!(lag > 4_000, "in breach at {lag} ms");
    let metrics = support::wait_for("the breach counted", Duration::from_secs(10), || async {
        let m = support::scrape(port);
        // Exported at 0 from the start.
        busy_loaded_breaches(&m).filter(|&n| n >= 1.0).map(|_| m)
    })
    .await;
    assert_eq!(
        busy_loaded_breaches(&metrics),
        Some(1.0),
        "one breach counted:\n{metrics}"
    );
    assert!(support::events(&metrics, "freshness_breached", "loaded") >= 1.0);
    assert!(
        daemon.log_text().contains("public.busy is")
            && daemon.log_text().contains("past its budget of 4s")
    );

    proxy.set(Mode::Forward);
    wait_equal(&s.client, &TABLES, Duration::from_secs(90)).await;
    wait_status(port, "public.busy", "loaded", "ok", Duration::from_secs(30)).await;
    // The status is computed per request; the event on the next evaluation (each second).
    let metrics = support::wait_for("the restored event", Duration::from_secs(10), || async {
        let m = support::scrape(port);
        (support::events(&m, "freshness_restored", "loaded") >= 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        busy_loaded_breaches(&metrics),
        Some(1.0),
        "a breach is counted once however long it lasts"
    );
    drop(daemon);
}

/// A table being snapshotted is complete at no stage: no watermark, status `snapshotting`,
/// until its last rows are there; the table beside it, snapshotted at once, goes on as
/// usual. The first loaded watermark it shows finds every row in the warehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_being_snapshotted_has_no_watermark_until_all_its_rows_are_there() {
    const ROWS: i64 = 30_000;
    let s = setup("fr_snap").await;
    s.client
        .batch_execute(&format!(
            "INSERT INTO public.busy SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .expect("fill");
    let broker = Broker::start(Engine::Memory);
    let lake = s.dir.path().join("lake");
    // Snapshots run one table at a time, in this order: the empty one is done at once.
    let tables = ["public.quiet", "public.busy"];
    let extra = format!(
        "batcher:\n  store: file://{}\n  rotation:\n    max_age: 1s\n{}",
        lake.display(),
        warehouse_yaml(&s.db.url, &tables, "10s")
    );
    let pipeline = s.kafka_pipeline(&tables, &broker.brokers(), &extra, true);
    let yaml = std::fs::read_to_string(&pipeline).expect("pipeline");
    // Small chunks: the snapshot lasts long enough to be watched.
    let yaml = yaml.replace(
        "source:\n",
        "source:\n  snapshot: { mode: initial, chunk_rows: 20 }\n",
    );
    std::fs::write(&pipeline, yaml).expect("pipeline");
    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    let started = Instant::now();
    let mut seen_held = false;
    let mut quiet_ok_meanwhile = false;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "public.busy never loaded: {:?}",
            freshness(port)
        );
        let f = freshness(port);
        let busy_loaded = stage(&f, "public.busy", "loaded");
        if busy_loaded["watermark_lsn"].is_null() {
            if f["public.busy"]
                .iter()
                .all(|s| s["status"] == "snapshotting")
            {
                if !seen_held {
                    // The gauge follows on the next evaluation (each second).
                    support::wait_for("the snapshotting gauge", Duration::from_secs(5), || async {
                        support::scrape(port)
                            .contains("freshet_freshness_snapshotting{table=\"public.busy\"} 1")
                            .then_some(())
                    })
                    .await;
                }
                seen_held = true;
                quiet_ok_meanwhile |= stage(&f, "public.quiet", "loaded")["status"] == "ok";
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // The first claim that the warehouse holds everything: it does.
        let n: i64 = s
            .client
            .query_one("SELECT count(*) FROM analytics.busy", &[])
            .await
            .expect("count the warehouse's rows")
            .get(0);
        assert_eq!(
            n, ROWS,
            "public.busy loaded up to {busy_loaded} with {n} of its {ROWS} rows in the warehouse"
        );
        assert_ne!(busy_loaded["status"], "snapshotting", "{busy_loaded}");
        break;
    }
    eprintln!(
        "the snapshot of {ROWS} rows was loaded after {:?}",
        started.elapsed()
    );
    assert!(seen_held, "public.busy was never seen snapshotting");
    assert!(
        quiet_ok_meanwhile,
        "public.quiet's loaded stage was never ok while public.busy was snapshotting"
    );
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;

    // Snapshotted again on demand: its rows were all delivered once, so nothing is held and
    // its watermarks keep moving while the new reads go through.
    let (code, text) = support::freshet(&[
        "snapshot".as_ref(),
        "--pipeline".as_ref(),
        pipeline.as_os_str(),
        "--table".as_ref(),
        "public.busy".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let before = stage(&freshness(port), "public.busy", "loaded")["watermark_lsn"].clone();
    let resnapshot = Instant::now();
    while resnapshot.elapsed() < Duration::from_secs(8) {
        let f = freshness(port);
        for s in &f["public.busy"] {
            assert_ne!(s["status"], "snapshotting", "a complete table held: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = stage(&freshness(port), "public.busy", "loaded")["watermark_lsn"].clone();
    assert!(
        after.as_str() != before.as_str(),
        "the loaded watermark stood still during the re-snapshot: {before} then {after}"
    );
    assert!(
        daemon.log_text().contains("snapshot requested by signal"),
        "the re-snapshot never started"
    );
    drop(daemon);
}
