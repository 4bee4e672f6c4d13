//! The read router against a real primary and a streaming replica made with
//! `pg_basebackup -R`: `freshet router` on its own, probing both, answering `/v1/route`.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::Setup;

const DDL: &str = "CREATE TABLE public.t (id serial PRIMARY KEY, v text);";
const INSERT: &str = "INSERT INTO public.t (v) VALUES ('w')";

/// `freshet router` as a child process, killed on drop.
struct RouterProcess {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_router(dir: &std::path::Path, yaml: &str) -> RouterProcess {
    let pipeline = dir.join("router.yaml");
    std::fs::write(&pipeline, yaml).expect("pipeline");
    let port = support::kafka::free_port();
    let log = dir.join("router.log");
    let out = std::fs::File::create(&log).expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["router", "--pipeline"])
        .arg(&pipeline)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start freshet router");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the router did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    RouterProcess { child, port, log }
}

fn route(port: u16, query: &str) -> (u16, Json) {
    let (status, body) = support::http_get(port, &format!("/v1/route?{query}"));
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// Polls `/v1/route?query` until it answers `target`; returns the decision.
async fn wait_route(port: u16, query: &str, target: &str, timeout: Duration) -> Json {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, d) = route(port, query);
        assert_eq!(status, 200, "{d}");
        if d["target"] == target {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "/v1/route?{query} not {target} within {timeout:?}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes the row `mine`; returns its read-your-writes token: the position after the commit
/// returned (the commit record included).
async fn write_mine(p: &tokio_postgres::Client) -> String {
    p.batch_execute("INSERT INTO public.t (v) VALUES ('mine')")
        .await
        .expect("write");
    p.query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("position")
        .get(0)
}

fn router_yaml(primary: &str, replica: &str) -> String {
    // A password in the replica's URL (trust auth ignores it): no answer may show it.
    let replica = replica.replacen("postgres@", "postgres:s3cret-pw@", 1);
    assert!(replica.contains("s3cret-pw"));
    format!(
        "name: router-test\nsource:\n  url: {primary}\n  tables: ['public.t']\n\
         freshness_classes:\n  alerts: 0ms\n  analytics: 2s\n\
         tables:\n  public.t: {{ freshness: analytics }}\n\
         router:\n  poll_interval: 200ms\n  replicas:\n    - name: replica-1\n      url: {replica}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_loses_bounded_staleness_reads_to_the_primary_until_it_resumes() {
    let (primary, replica, p, r) = support::primary_and_replica(DDL, "t").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start_router(dir.path(), &router_yaml(&primary.url, &replica.url));
    let port = router.port;

    let d = wait_route(
        port,
        "table=public.t&class=analytics",
        "replica",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(d["reason"], "fresh_enough", "{d}");
    assert_eq!(d["name"], "replica-1");
    // Idle and caught up, the replica is not lagging, however long since its last commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, d) = route(port, "table=public.t&max_staleness=1s");
    assert_eq!(
        d["target"], "replica",
        "an idle replica that replayed everything: {d}"
    );
    assert!(d["observed_lag_ms"].as_u64().unwrap() <= 1_000, "{d}");

    // Paused under writes: it falls behind the budget, reads go to the primary.
    r.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause");
    let writer = support::Writer::start(&primary.url, INSERT, Duration::from_millis(100)).await;
    let d = wait_route(
        port,
        "table=public.t&class=analytics",
        "primary",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(d["reason"], "replica_behind", "{d}");
    assert_eq!(d["observed_lag_ms"], 0);
    // A looser budget still reads the paused replica.
    let (_, loose) = route(port, "table=public.t&max_staleness=10m");
    assert_eq!(loose["target"], "replica", "{loose}");
    // Budget 0 always answers primary.
    let (_, zero) = route(port, "table=public.t&max_staleness=0ms");
    assert_eq!(
        (zero["target"].as_str(), zero["reason"].as_str()),
        (Some("primary"), Some("zero_budget"))
    );

    // Read-your-writes: a fresh write's position routes to the primary while replay is paused.
    let token = write_mine(&p).await;
    let (_, mine) = route(port, &format!("table=public.t&after_lsn={token}"));
    assert_eq!(mine["target"], "primary", "{mine}");
    assert_eq!(mine["reason"], "replica_behind");

    writer.stop().await;
    r.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume");
    let d = wait_route(
        port,
        "table=public.t&class=analytics",
        "replica",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(d["reason"], "fresh_enough");
    let mine = wait_route(
        port,
        &format!("table=public.t&after_lsn={token}"),
        "replica",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(mine["reason"], "applied", "{mine}");
    // Read-your-writes, there: the row written before the token is on the replica.
    let mine: i64 = r
        .query_one("SELECT count(*) FROM public.t WHERE v = 'mine'", &[])
        .await
        .expect("read the replica")
        .get(0);
    assert_eq!(mine, 1, "routed to a replica that lacks the write");

    let metrics = support::scrape(port);
    support::promtool_check_metrics(&metrics);
    assert!(
        metrics.contains("# HELP freshet_router_decisions_total "),
        "{metrics}"
    );
    for (target, reason) in [
        ("replica", "fresh_enough"),
        ("primary", "replica_behind"),
        ("primary", "zero_budget"),
        ("replica", "applied"),
    ] {
        let line =
            format!("freshet_router_decisions_total{{target=\"{target}\",reason=\"{reason}\"}}");
        assert!(
            support::sample(&metrics, &line).is_some_and(|n| n >= 1.0),
            "{line} counted:\n{metrics}"
        );
    }
    let log = std::fs::read_to_string(&router.log).unwrap_or_default();
    assert!(
        !log.contains("s3cret-pw"),
        "the log shows the password:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_400_naming_what_is_wrong_and_no_answer_shows_a_secret() {
    let s = Setup::new("rt_bad", DDL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The primary as its own "replica": the probes run, the secret is in its URL.
    let router = start_router(dir.path(), &router_yaml(&s.db.url, &s.db.url));
    let port = router.port;
    for (query, names) in [
        ("table=public.nope&max_staleness=1s", "public.nope"),
        ("table=public.t&max_staleness=soon", "max_staleness"),
        ("table=public.t&after_lsn=16B3748", "after_lsn"),
        ("table=public.t&after_lsn=0/XYZ", "after_lsn"),
        ("table=public.t&class=realtime", "realtime"),
        ("table=public.t&colour=blue", "colour"),
        ("table=public.t&max_staleness=1s&after_lsn=0/1", "one of"),
        ("max_staleness=1s", "table is missing"),
    ] {
        let (status, body) = route(port, query);
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{query}: {body}"));
        assert!(error.contains(names), "{query}: {error}");
    }
    // Without a need, the table's class decides.
    let (status, d) = route(port, "table=public.t");
    assert_eq!(status, 200, "{d}");
    for path in [
        "/v1/route?table=public.t&max_staleness=1h",
        "/v1/freshness",
        "/metrics",
    ] {
        let (_, body) = support::http_get(port, path);
        assert!(
            !body.contains("s3cret-pw"),
            "{path} shows the password: {body}"
        );
    }
    let (status, doc) = support::http_get(port, "/openapi.yaml");
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        std::fs::read_to_string(support::repo().join("src/router/openapi.yaml")).expect("openapi")
    );
}

fn start_role(
    dir: &std::path::Path,
    pipeline: &std::path::Path,
    role: &str,
) -> (support::Daemon, u16) {
    let port = support::kafka::free_port();
    let daemon = support::Daemon::start_env(
        pipeline,
        &[
            "--state-dir",
            &dir.join("state").display().to_string(),
            "--role",
            role,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &dir.join(format!("{role}.log")),
        &[],
    );
    (daemon, port)
}

/// The whole pipeline into a warehouse beside a replica: analytics reads go to the
/// warehouse while it keeps its budget, to the replica while the loader is stopped (the
/// breach counted by the capture half, which sees the loaded stage only through the
/// warehouse's records), and back once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_loader_sends_analytics_reads_to_the_replica_until_it_catches_up() {
    let (primary, replica, p, _r) = support::primary_and_replica(DDL, "t").await;
    p.batch_execute("CREATE PUBLICATION rt FOR TABLE public.t")
        .await
        .expect("publication");
    let broker = support::kafka::Broker::start(support::kafka::Engine::Memory);
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("pipeline.yaml");
    let yaml = router_yaml(&primary.url, &replica.url)
        .replace("analytics: 2s", "analytics: 10s")
        .replace(
            "  tables: ['public.t']\n",
            "  tables: ['public.t']\n  slot: rt\n  publication: rt\n  heartbeat_interval: 1s\n  status_interval: 200ms\n",
        )
        + &format!(
            "kafka:\n  brokers: '{}'\n  topic_prefix: rt\nbatcher:\n  store: file://{}\n  rotation:\n    max_age: 1s\n\
             warehouse:\n  driver: postgres\n  schema: analytics\n  postgres:\n    url: {}\n",
            broker.brokers(),
            dir.path().join("lake").display(),
            primary.url
        );
    std::fs::write(&pipeline, yaml).expect("pipeline");
    let (capture, port) = start_role(dir.path(), &pipeline, "capture");
    let (mut sink, _) = start_role(dir.path(), &pipeline, "sink");
    let writer = support::Writer::start(&primary.url, INSERT, Duration::from_millis(200)).await;
    let query = "table=public.t&class=analytics";
    support::wait_for(
        "the capture half's listener",
        Duration::from_secs(30),
        || async {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let d = wait_route(port, query, "warehouse", Duration::from_secs(90)).await;
    assert_eq!(d["reason"], "fresh_enough", "{d}");

    sink.kill9();
    let d = wait_route(port, query, "replica", Duration::from_secs(40)).await;
    assert_eq!(d["reason"], "warehouse_behind", "{d}");
    let metrics = support::wait_for(
        "the loaded breach counted",
        Duration::from_secs(10),
        || async {
            let m = support::scrape(port);
            // Exported at 0 from the start: counted once it is 1.
            m.lines()
                .any(|l| {
                    l.starts_with("freshet_freshness_breaches_total{")
                        && l.contains("stage=\"loaded\"")
                        && l.contains("table=\"public.t\"")
                        && l.ends_with(" 1")
                })
                .then_some(m)
        },
    )
    .await;
    assert!(
        support::events(&metrics, "freshness_breached", "loaded") >= 1.0,
        "{metrics}"
    );

    let (sink, _) = start_role(dir.path(), &pipeline, "sink");
    let d = wait_route(port, query, "warehouse", Duration::from_secs(90)).await;
    assert_eq!(d["reason"], "fresh_enough", "{d}");
    writer.stop().await;

    // Read-your-writes on the warehouse: a fresh write's token goes elsewhere until the row
    // is loaded, and whenever it goes to the warehouse, the row is there.
    let token = write_mine(&p).await;
    let mut elsewhere = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, d) = route(port, &format!("table=public.t&after_lsn={token}"));
        assert_eq!(status, 200, "{d}");
        if d["target"] == "warehouse" {
            assert_eq!(d["reason"], "applied", "{d}");
            let loaded: i64 = p
                .query_one("SELECT count(*) FROM analytics.t WHERE v = 'mine'", &[])
                .await
                .expect("read the warehouse")
                .get(0);
            assert_eq!(loaded, 1, "routed to a warehouse that lacks the write: {d}");
            break;
        }
        elsewhere += 1;
        assert!(
            Instant::now() < deadline,
            "never routed to the warehouse: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(elsewhere > 0, "the warehouse had the write at once");
    drop((capture, sink));
}

/// Schemathesis (PyPI) against the served OpenAPI document: requests generated from it, valid
/// and not, get no server error, answer with a documented status, content type and body,
/// and invalid ones are refused. Not checked: that every schema-valid request is accepted —
/// a query naming a table the pipeline does not capture, or several needs at once, is valid
/// to the schema and rightly a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undocumented_answer() {
    let s = Setup::new("rt_schema", DDL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start_router(dir.path(), &router_yaml(&s.db.url, &s.db.url));
    let schemathesis = std::env::var("FRESHET_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("FRESHET_SCHEMATHESIS is not set: run the tests with scripts/test.sh, which installs it")
    });
    let out = std::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/openapi.yaml", router.port))
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-time",
            "30",
            "--seed",
            "20261201",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{schemathesis}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis:\n{text}");
    // It tested every operation it selected, with many cases (not a run that tested nothing).
    let count = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split(['/', ' ', ',']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
    };
    assert!(count("Tested: ") >= 5, "{text}");
    assert_eq!(count("Tested: "), count("Selected: "), "{text}");
    let generated = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count of generated cases:\n{text}"));
    assert!(generated >= 100, "{generated} cases:\n{text}");
    eprintln!("schemathesis: {generated} cases, no failure");
}
