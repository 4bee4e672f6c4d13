//! Real services for the integration tests. `scripts/test.sh` starts one PostgreSQL cluster
//! for the whole run and exports its URL; each test gets a database of its own in it, so
//! tests run in parallel without seeing each other's rows, slots or publications.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub mod atlasco;
pub mod kafka;
pub mod lake;
pub mod pki;
pub mod registry;
pub mod types;
pub mod warehouse;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared cluster's URL, from `scripts/test.sh`.
pub fn cluster_url() -> String {
    std::env::var("FRESHET_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("FRESHET_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL")
    })
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A test's own database with a client on it, a scratch directory, and a slot (and
/// publication) named after the database. Each test file adds how it builds pipelines.
pub struct Setup {
    pub db: TestDb,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub slot: String,
}

impl Setup {
    pub async fn new(prefix: &str, ddl: &str) -> Setup {
        let db = TestDb::new(prefix).await;
        let client = db.client().await;
        client.batch_execute(ddl).await.expect("ddl");
        let slot = db.name.clone();
        Setup {
            db,
            client,
            dir: tempfile::tempdir().expect("tempdir"),
            slot,
        }
    }

    /// A publication named after the slot.
    pub async fn publish(&self, tables: &str) {
        let sql = format!("CREATE PUBLICATION {} FOR TABLE {tables}", self.slot);
        self.client
            .batch_execute(&sql)
            .await
            .expect("create publication");
    }

    /// `freshet run` with its state in this setup's directory and `/metrics` on a port of its
    /// own, returned beside it; `env` is added to its environment.
    pub fn start_listening(
        &self,
        pipeline: &std::path::Path,
        env: &[(&str, String)],
    ) -> (Daemon, u16) {
        let port = kafka::free_port();
        let daemon = Daemon::start_env(
            pipeline,
            &[
                "--state-dir",
                &self.dir.path().join("state").display().to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
            &self.dir.path().join("freshet.log"),
            env,
        );
        (daemon, port)
    }

    /// Waits until the daemon's slot is streaming (it is then safe to write).
    pub async fn slot_ready(&self, daemon: &Daemon) {
        slot_streaming(&self.client, &self.slot, daemon).await;
    }
}

/// A fresh database in the shared cluster, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn new(prefix: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = cluster_url();
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = with_dbname(&admin_url, &name);
        TestDb {
            name,
            url,
            admin_url,
        }
    }

    pub fn config(&self) -> freshet::pg::Dsn {
        freshet::pg::Dsn::parse(&self.url).expect("test url")
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, synchronous: psql is there wherever the cluster is.
        let _ = Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// `url` with its database (the path) replaced by `db`.
pub fn with_dbname(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > "postgresql://".len() => format!("{}/{db}", &url[..i]),
        _ => format!("{url}/{db}"),
    }
}

/// A cluster of the test's own, for tests that need other server settings; stopped on drop.
pub struct OwnCluster {
    pub url: String,
    dir: PathBuf,
}

impl OwnCluster {
    pub fn start<S: AsRef<str>>(settings: &[S]) -> OwnCluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "freshet-own-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(repo().join("scripts/pg.sh"));
        cmd.arg("start").arg(&dir);
        for s in settings {
            cmd.args(["-c", s.as_ref()]);
        }
        let out = cmd.output().expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "pg.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        OwnCluster { url, dir }
    }
}

impl OwnCluster {
    /// A streaming replica of this cluster (`pg_basebackup -R`), started; stopped on drop.
    pub fn replica(&self) -> OwnCluster {
        let dir = self.dir.with_extension("replica");
        let out = Command::new(repo().join("scripts/pg.sh"))
            .arg("replica")
            .arg(&dir)
            .arg(&self.dir)
            .output()
            .expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "pg.sh replica: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        OwnCluster { url, dir }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/pg.sh"))
            .arg("stop")
            .arg(&self.dir)
            .arg("immediate")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("initdb.log"));
        let _ = std::fs::remove_file(self.dir.with_extension("basebackup.log"));
    }
}

/// Polls `check` until it returns Some, or panics naming what it waited for.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match try_wait_for(timeout, check).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns Some, or None after `timeout`.
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn schema_sql() -> String {
    std::fs::read_to_string(repo().join("schema/schema.sql")).expect("schema.sql")
}

/// A pipeline file for `db`, capturing `tables` through `slot` / `publication`.
pub fn pipeline_yaml(
    db_url: &str,
    slot: &str,
    publication: &str,
    tables: &[&str],
    heartbeat: &str,
) -> String {
    let list: Vec<String> = tables.iter().map(|t| format!("    - '{t}'")).collect();
    format!(
        "name: test\nsource:\n  url: {db_url}\n  slot: {slot}\n  publication: {publication}\n  tables:\n{}\n  heartbeat_interval: {heartbeat}\n  status_interval: 200ms\n",
        list.join("\n")
    )
}

/// `freshet run` as a child process, so tests can SIGTERM or SIGKILL it.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(
        pipeline: &std::path::Path,
        output: &std::path::Path,
        log: &std::path::Path,
    ) -> Daemon {
        Daemon::start_with(
            pipeline,
            &["--output", &format!("jsonl:{}", output.display())],
            log,
        )
    }

    /// `freshet run --pipeline FILE ARGS…`, logging to `log`.
    pub fn start_with(pipeline: &std::path::Path, args: &[&str], log: &std::path::Path) -> Daemon {
        Daemon::start_env(pipeline, args, log, &[])
    }

    /// As [`Daemon::start_with`], with `env` added to the environment. The HTTP listener
    /// takes a free port unless `args` names one (`--listen`): tests run side by side.
    pub fn start_env(
        pipeline: &std::path::Path,
        args: &[&str],
        log: &std::path::Path,
        env: &[(&str, String)],
    ) -> Daemon {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_freshet"))
            .arg("run")
            .arg("--pipeline")
            .arg(pipeline)
            .args(args)
            .args(listen)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn freshet");
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Whether the process is still running (it was not restarted or stopped).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "freshet did not stop within 60s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Returns a row once the slot is streaming to a walsender. Freshet creates the slot on its
/// replication session, whose walsender holds the slot (in state `startup`) while it waits
/// for running transactions to reach a consistent point; writes made then are before its
/// start. Only a walsender past START_REPLICATION (catching up or streaming) means streaming.
pub const SLOT_STREAMING: &str = "SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')";

/// The captured lines, parsed.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A killed writer may leave a torn last line; it was never acknowledged.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// The slot's confirmed position as text, or None when the slot is missing.
pub async fn confirmed_flush(client: &Client, slot: &str) -> Option<String> {
    client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("read slot")
        .and_then(|r| r.get(0))
}

/// Whether LSN text `a` is at or past `b`.
pub fn lsn_ge(a: &str, b: &str) -> bool {
    fn parse(s: &str) -> u64 {
        let (hi, lo) = s.split_once('/').expect("lsn");
        (u64::from_str_radix(hi, 16).expect("lsn") << 32)
            | u64::from_str_radix(lo, 16).expect("lsn")
    }
    parse(a) >= parse(b)
}

/// The captured lines in identity order (commit LSN, sequence; then op, which tells the delete
/// and the create of a key change apart), each identity once. Panics if an identity was
/// captured with two contents: a replay after a crash may repeat a change, never alter it.
pub fn by_identity(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let mut by_id: std::collections::BTreeMap<(u64, u64, String), &serde_json::Value> =
        Default::default();
    for l in lines {
        let (hi, lo) = l["lsn"]
            .as_str()
            .expect("lsn")
            .split_once('/')
            .expect("X/Y");
        let lsn = (u64::from_str_radix(hi, 16).expect("hex") << 32)
            | u64::from_str_radix(lo, 16).expect("hex");
        let id = (
            lsn,
            l["seq"].as_u64().expect("seq"),
            l["op"].as_str().expect("op").to_owned(),
        );
        if let Some(prev) = by_id.insert(id.clone(), l) {
            assert_eq!(prev, l, "identity {id:?} was captured with two contents");
        }
    }
    by_id.into_values().collect()
}

/// Table → key → row after applying the captured changes in identity order. `key` names each
/// table's key columns. Strict: an update or delete must find its row (for streams that saw
/// every row arrive). Otherwise a change may precede its key's snapshot read (DBLog emits a
/// chunk's rows at its high watermark), so it need not.
pub fn replay(
    lines: &[serde_json::Value],
    key: impl Fn(&str) -> Vec<&'static str>,
    strict: bool,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>> {
    let mut state: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, serde_json::Value>,
    > = Default::default();
    for l in by_identity(lines) {
        let table = l["table"].as_str().expect("table");
        let columns = key(table);
        let key_of = |row: &serde_json::Value| {
            columns
                .iter()
                .map(|k| row[*k].to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let rows = state.entry(table.to_string()).or_default();
        match l["op"].as_str().expect("op") {
            "c" | "r" => {
                rows.insert(key_of(&l["after"]), l["after"].clone());
            }
            "u" => {
                let mut new = l["after"].clone();
                let old_key = if l["before"].is_null() {
                    key_of(&new)
                } else {
                    key_of(&l["before"])
                };
                match rows.remove(&old_key) {
                    Some(old) => {
                        for c in l["unchanged"].as_array().expect("unchanged") {
                            let c = c.as_str().expect("column");
                            new[c] = old[c].clone();
                        }
                    }
                    None => assert!(!strict, "update of a row never captured: {l}"),
                }
                rows.insert(key_of(&new), new);
            }
            "d" => {
                let removed = rows.remove(&key_of(&l["before"]));
                assert!(
                    !strict || removed.is_some(),
                    "delete of a row never captured: {l}"
                );
            }
            "t" => rows.clear(),
            other => panic!("unknown op {other}"),
        }
    }
    state
}

/// Waits until `slot` has confirmed everything written so far (the current WAL position).
pub async fn caught_up(client: &Client, slot: &str, daemon: &Daemon) {
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    let done = try_wait_for(Duration::from_secs(120), || {
        let target = target.clone();
        async move {
            confirmed_flush(client, slot)
                .await
                .filter(|c| lsn_ge(c, &target))
                .map(|_| ())
        }
    })
    .await;
    assert!(
        done.is_some(),
        "the slot never confirmed {target}; log:\n{}",
        daemon.log_text()
    );
}

/// Waits until `slot` is streaming to a walsender: writes made after this are captured.
pub async fn slot_streaming(client: &Client, slot: &str, daemon: &Daemon) {
    let ready = try_wait_for(Duration::from_secs(60), || async move {
        client
            .query_opt(SLOT_STREAMING, &[&slot])
            .await
            .expect("read slot")
            .map(|_| ())
    })
    .await;
    assert!(
        ready.is_some(),
        "slot {slot} never started streaming; log:\n{}",
        daemon.log_text()
    );
}

/// Waits (60 s at most) for the daemon to exit by itself.
pub async fn exit_status(daemon: &mut Daemon) -> std::process::ExitStatus {
    let log = daemon.log.clone();
    wait_for(
        &format!("freshet to exit; log: {}", log.display()),
        Duration::from_secs(60),
        || {
            let exited = daemon.child.try_wait().ok().flatten();
            async move { exited }
        },
    )
    .await
}

/// The port of a `postgresql://…:PORT/…` URL.
pub fn url_port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// `freshet status FLAG --url` against the listener on `port`: the exit code and the text.
pub fn status(port: u16, flag: &str) -> (Option<i32>, String) {
    freshet(&["status", flag, "--url", &format!("http://127.0.0.1:{port}")])
}

/// `freshet ARGS…` to its end: the exit code and everything it printed.
pub fn freshet<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String) {
    freshet_env(args, &[])
}

/// As [`freshet`], with `env` added to the environment.
pub fn freshet_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, String)],
) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run freshet");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `freshet check --pipeline FILE`.
pub fn check(pipeline: &std::path::Path) -> (Option<i32>, String) {
    check_env(pipeline, &[])
}

/// As [`check`], with `env` added to the environment (later entries win).
pub fn check_env(pipeline: &std::path::Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    freshet_env(
        &[
            std::ffi::OsStr::new("check"),
            std::ffi::OsStr::new("--pipeline"),
            pipeline.as_os_str(),
        ],
        env,
    )
}

/// Prometheus text: the value of one sample, if present.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn scrape(port: u16) -> String {
    http_get(port, "/metrics").1
}

/// `GET path` on the daemon's HTTP listener: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect for {path}: {e}"));
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, body.to_owned())
}

/// `promtool check metrics` on an exposition: it must pass (names, types, help texts).
pub fn promtool_check_metrics(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install.sh installs Debian's prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `freshet_events_total{kind, stage}` in a scrape (0 when never counted).
pub fn events(metrics: &str, kind: &str, stage: &str) -> f64 {
    sample(
        metrics,
        &format!("freshet_events_total{{kind=\"{kind}\",stage=\"{stage}\"}}"),
    )
    .unwrap_or(0.0)
}

/// `insert` run every `every` until stopped.
pub struct Writer {
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub async fn start(url: &str, insert: &'static str, every: Duration) -> Writer {
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (w, p) = (writing.clone(), connect(url).await);
        let task = tokio::spawn(async move {
            while w.load(std::sync::atomic::Ordering::Relaxed) {
                p.batch_execute(insert).await.expect("insert");
                tokio::time::sleep(every).await;
            }
        });
        Writer { writing, task }
    }

    pub async fn stop(self) {
        self.writing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("writer");
    }
}

/// A primary of the test's own and its replica, with `ddl` run on the first and `table`
/// arrived on the second.
pub async fn primary_and_replica(
    ddl: &str,
    table: &str,
) -> (
    OwnCluster,
    OwnCluster,
    tokio_postgres::Client,
    tokio_postgres::Client,
) {
    let primary = OwnCluster::start::<&str>(&[]);
    let p = connect(&primary.url).await;
    p.batch_execute(ddl).await.expect("ddl");
    let replica = primary.replica();
    let r = connect(&replica.url).await;
    wait_for(
        "the table on the replica",
        Duration::from_secs(30),
        || async {
            r.query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&table])
                .await
                .ok()
                .flatten()
                .map(|_| ())
        },
    )
    .await;
    (primary, replica, p, r)
}
