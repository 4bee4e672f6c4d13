//! What `dashboards/` ships: the alerting rules valid, and each one firing (or not) as its
//! unit tests in `dashboards/alerts.test.yml` say, by Prometheus's own `promtool`; and the
//! Grafana dashboards' and the rules' PromQL evaluated by a real Prometheus against a live
//! run.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(support::repo().join("dashboards"))
        .output()
        .expect("promtool (scripts/install.sh installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every rule has a unit test.
    let rules =
        std::fs::read_to_string(support::repo().join("dashboards/alerts.yml")).expect("rules");
    let tests =
        std::fs::read_to_string(support::repo().join("dashboards/alerts.test.yml")).expect("tests");
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {line}\n")),
            "alert {line} has no test in alerts.test.yml"
        );
    }
}

/// Prometheus (Debian's), scraping one target each second with the shipped rules loaded;
/// killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: freshet\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n",
                support::repo().join("dashboards/alerts.yml").display()
            ),
        )
        .expect("config");
        let port = support::kafka::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/install.sh installs Debian's prometheus)");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "/-/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: its result, or Prometheus's error.
    fn query(&self, promql: &str) -> Result<Vec<Json>, String> {
        let q: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = get(self.port, &format!("/api/v1/query?query={q}"));
        let doc: Json = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match (status, doc["status"].as_str()) {
            (200, Some("success")) => Ok(doc["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()),
            _ => Err(format!("HTTP {status}: {}", doc["error"])),
        }
    }
}

/// A GET over HTTP/1.0 (no chunked answer); an unreachable port answers 0.
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// The metric names an expression reads.
fn metric_names(promql: &str) -> Vec<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("freshet_"))
        .map(str::to_owned)
        .collect()
}

/// Every panel's PromQL in a Grafana dashboard, with Grafana's variables as a query over
/// every table and stage would have them; and each templating query's metric.
fn dashboard_exprs(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(support::repo().join("dashboards/grafana").join(file))
        .expect("dashboard");
    let doc: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    fn walk(panel: &Json, out: &mut Vec<String>) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_owned());
            }
        }
        for p in panel["panels"].as_array().into_iter().flatten() {
            walk(p, out);
        }
    }
    let mut exprs = Vec::new();
    for p in doc["panels"].as_array().expect("panels") {
        assert!(
            p["gridPos"].is_object(),
            "{file}: a panel without gridPos: {}",
            p["title"]
        );
        walk(p, &mut exprs);
    }
    for v in doc["templating"]["list"].as_array().into_iter().flatten() {
        // `label_values(METRIC, label)`: the metric must have the label.
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        if let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            exprs.push(format!("count by ({}) ({metric})", label.trim()));
        }
    }
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "5m")
                .replace("${table}", ".*")
                .replace("$table", ".*")
                .replace("${stage}", ".*")
                .replace("$stage", ".*")
        })
        .collect()
}

/// The shipped dashboards and rules against what a live run exports: the whole pipeline
/// (capture, Kafka, lake, the PostgreSQL warehouse, the router beside a streaming replica)
/// scraped by a real Prometheus. Every panel's expression parses and returns data; every
/// rule evaluates without error, over metrics the run exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_rule_evaluates_against_a_live_run() {
    let (primary, replica, p, _r) = support::primary_and_replica(
        "CREATE TABLE public.t (id serial PRIMARY KEY, v text);
         CREATE PUBLICATION dash FOR TABLE public.t;",
        "t",
    )
    .await;
    // A bounded slot, so its safe WAL is exported (alone: ALTER SYSTEM takes no transaction).
    p.batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'")
        .await
        .expect("max_slot_wal_keep_size");
    p.batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let broker = support::kafka::Broker::start(support::kafka::Engine::Memory);
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: dashboards\nsource:\n  url: {primary}\n  tables: ['public.t']\n  slot: dash\n  publication: dash\n  \
             heartbeat_interval: 1s\n  status_interval: 200ms\n\
             freshness_classes:\n  alerts: 0ms\n  analytics: 30s\n\
             tables:\n  public.t: {{ freshness: analytics }}\n\
             router:\n  poll_interval: 500ms\n  replicas:\n    - name: replica-1\n      url: {replica}\n\
             kafka:\n  brokers: '{brokers}'\n  topic_prefix: dash\n\
             batcher:\n  store: file://{lake}\n  rotation:\n    max_age: 1s\n\
             warehouse:\n  driver: postgres\n  schema: analytics\n  postgres:\n    url: {primary}\n",
            primary = primary.url,
            replica = replica.url,
            brokers = broker.brokers(),
            lake = dir.path().join("lake").display(),
        ),
    )
    .expect("pipeline");
    let port = support::kafka::free_port();
    let daemon = support::Daemon::start_env(
        &pipeline,
        &[
            "--state-dir",
            &dir.path().join("state").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &dir.path().join("freshet.log"),
        &[],
    );
    let writer = support::Writer::start(
        &primary.url,
        "INSERT INTO public.t (v) VALUES ('w'); UPDATE public.t SET v = 'u' WHERE id = currval('public.t_id_seq') - 1; DELETE FROM public.t WHERE id = currval('public.t_id_seq') - 2",
        Duration::from_millis(100),
    )
    .await;
    // The whole way through: the warehouse serves analytics reads.
    support::wait_for(
        "the warehouse to serve",
        Duration::from_secs(120),
        || async {
            let (status, body) = get(port, "/v1/route?table=public.t&class=analytics");
            (status == 200 && body.contains("\"target\":\"warehouse\"")).then_some(())
        },
    )
    .await;
    for q in ["class=alerts", "max_staleness=1h", "max_staleness=1ms"] {
        let (status, body) = get(port, &format!("/v1/route?table=public.t&{q}"));
        assert_eq!(status, 200, "{q}: {body}");
    }
    drop(p);

    let prometheus = Prometheus::start(port);
    let mut exprs = dashboard_exprs("overview.json");
    let overview = exprs.len();
    exprs.extend(dashboard_exprs("freshness.json"));
    assert!(overview >= 20 && exprs.len() >= overview + 10, "{exprs:#?}");
    // A fallback (`or vector(0)`) answers whatever a name says: each name must be exported,
    // but for a counter whose labels are known only once counted (Redshift alone cuts values).
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|n| n != "freshet_loader_values_truncated_total")
        .collect();
    names.sort();
    names.dedup();
    let names: Vec<String> = names
        .into_iter()
        .map(|n| format!("group({{__name__=\"{n}\"}})"))
        .collect();
    // Rates need two scrapes in their window, histograms an observation between them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let failures = loop {
        let failures: Vec<String> = exprs
            .iter()
            .chain(&names)
            .filter_map(|e| match prometheus.query(e) {
                Ok(result) if !result.is_empty() => None,
                Ok(_) => Some(format!("no data: {e}")),
                Err(why) => Some(format!("{why}: {e}")),
            })
            .collect();
        if failures.is_empty() || Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        failures.is_empty(),
        "{} of {} panel expressions and metric names fail:\n{}",
        failures.len(),
        exprs.len() + names.len(),
        failures.join("\n")
    );

    // Every rule evaluated without error, over metrics this run exports.
    let (status, body) = get(prometheus.port, "/api/v1/rules");
    assert_eq!(status, 200, "{body}");
    let doc: Json = serde_json::from_str(&body).expect("rules");
    let rules: Vec<&Json> = doc["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(rules.len(), 8, "{body}");
    let exported = support::scrape(port);
    for r in rules {
        assert_eq!(r["health"], "ok", "rule {} evaluated: {r}", r["name"]);
        for name in metric_names(r["query"].as_str().expect("query")) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                [" ", "{"].iter().any(|after| {
                    let sample = format!("{base}{after}");
                    exported.starts_with(&sample) || exported.contains(&format!("\n{sample}"))
                }),
                "rule {} watches {name}, which the run does not export",
                r["name"]
            );
        }
    }
    eprintln!(
        "{} panel expressions over {} metrics, and 8 rules, evaluated against a live run",
        exprs.len(),
        names.len()
    );
    writer.stop().await;
    drop((daemon, replica, primary));
}
