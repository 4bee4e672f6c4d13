//! Watermark-based snapshots against a real PostgreSQL 15, with writes going on.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use support::{Daemon, TestDb};

struct Setup {
    db: TestDb,
    client: tokio_postgres::Client,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(prefix: &str, rows: i32) -> Setup {
        let db = TestDb::new(prefix).await;
        let client = db.client().await;
        client
            .batch_execute(&format!(
                "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note text);
                 INSERT INTO t SELECT g, g * 10, 'row ' || g FROM generate_series(1, {rows}) g;
                 CREATE PUBLICATION {} FOR TABLE t;",
                db.name
            ))
            .await
            .unwrap();
        Setup {
            db,
            client,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn pipeline(&self, mode: &str, chunk_rows: u32) -> PathBuf {
        let yaml = support::pipeline_yaml(
            &self.db.url,
            &self.db.name,
            &self.db.name,
            &["public.t"],
            "1s",
        )
        .replace(
            "source:\n",
            &format!("source:\n  snapshot:\n    mode: {mode}\n    chunk_rows: {chunk_rows}\n"),
        );
        let path = self.dir.path().join("p.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("changes.jsonl")
    }

    fn start(&self, pipeline: &Path) -> Daemon {
        Daemon::start(
            pipeline,
            &self.output(),
            &self.dir.path().join("freshet.log"),
        )
    }

    fn progress(&self) -> Json {
        let path = self.dir.path().join("changes.jsonl.snapshot.json");
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Json::Null)
    }

    async fn wait_progress(
        &self,
        what: &str,
        daemon: &Daemon,
        pred: impl Fn(&Json) -> bool,
    ) -> Json {
        let found = support::try_wait_for(Duration::from_secs(180), || {
            let p = self.progress();
            let ok = pred(&p["tables"]["public.t"]);
            async move { ok.then_some(p) }
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; progress {}; log:\n{}",
                self.progress(),
                daemon.log_text()
            )
        })
    }

    /// Waits until the daemon holds its slot: writes before that are not captured.
    async fn slot_ready(&self, daemon: &Daemon) {
        support::slot_streaming(&self.client, &self.db.name, daemon).await;
    }

    /// Waits until the slot has confirmed everything written so far.
    async fn caught_up(&self, daemon: &Daemon) {
        support::caught_up(&self.client, &self.db.name, daemon).await;
    }

    async fn source(&self) -> BTreeMap<String, Json> {
        self.client
            .query("SELECT id, to_jsonb(t)::text FROM t", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<_, i32>(0).to_string(),
                    serde_json::from_str(&r.get::<_, String>(1)).unwrap(),
                )
            })
            .collect()
    }
}

/// Table `t` after the captured changes, keyed by id (lenient: see `support::replay`).
fn replay(lines: &[Json]) -> BTreeMap<String, Json> {
    support::replay(lines, |_| vec!["id"], false)
        .remove("t")
        .unwrap_or_default()
}

/// Random writes against `t` until stopped: updates, deletes and inserts of new keys.
fn writer(url: String, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let client = support::connect(&url).await;
        let mut n = 0u64;
        let mut x = 88172645463325252u64;
        while !*stop.borrow() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 100_000) as i64 + 1;
            let sql = match x % 4 {
                0 => format!("DELETE FROM t WHERE id = {id}"),
                1 => format!("INSERT INTO t VALUES ({}, 1, 'new') ON CONFLICT (id) DO UPDATE SET v = t.v + 1", 200_000 + id),
                _ => format!("UPDATE t SET v = v + 1, note = 'updated {n}' WHERE id = {id}"),
            };
            client.batch_execute(&sql).await.unwrap();
            n += 1;
        }
        n
    })
}

#[tokio::test]
async fn snapshot_while_writes_continue_equals_the_source() {
    let s = Setup::new("snap_live", 100_000).await;
    let pipeline = s.pipeline("initial", 5000);
    let mut daemon = s.start(&pipeline);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writes = writer(s.db.url.clone(), stopped);
    s.wait_progress("the snapshot to finish", &daemon, |t| t["done"] == true)
        .await;
    let _ = stop.send(true);
    let writes = writes.await.unwrap();
    s.caught_up(&daemon).await;
    assert_eq!(daemon.terminate(), Some(0));

    let lines = support::read_jsonl(&s.output());
    let reads = lines.iter().filter(|l| l["op"] == "r").count();
    assert!(writes > 100, "the writer made {writes} writes");
    // Every row present during the snapshot, the writer's new ones included, less those the
    // stream carried newer versions of.
    assert!(
        (90_000..=100_000 + writes as usize).contains(&reads),
        "{reads} snapshot reads for 100k rows"
    );
    let captured = replay(&lines);
    let source = s.source().await;
    assert_eq!(captured.len(), source.len());
    for (id, row) in &source {
        assert_eq!(captured.get(id), Some(row), "row {id}");
    }
    let log = daemon.log_text();
    assert!(
        log.contains("snapshot finished") && log.contains("rows_per_sec"),
        "{log}"
    );
}

#[tokio::test]
async fn killed_mid_snapshot_resumes_without_rereading_finished_chunks() {
    let s = Setup::new("snap_kill", 100_000).await;
    let pipeline = s.pipeline("initial", 1000);
    let mut daemon = s.start(&pipeline);
    let saved = s
        .wait_progress("some chunks to be durable", &daemon, |t| {
            t["rows"].as_u64().unwrap_or(0) >= 20_000
        })
        .await;
    daemon.kill9();
    // What the file said after the kill is what the restart resumes from.
    let saved = if s.progress() == Json::Null {
        saved
    } else {
        s.progress()
    };
    let done_up_to: i64 = saved["tables"]["public.t"]["after_key"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(done_up_to < 100_000, "killed before the end");

    let mut daemon = s.start(&pipeline);
    s.wait_progress("the resumed snapshot to finish", &daemon, |t| {
        t["done"] == true
    })
    .await;
    s.caught_up(&daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    let log = daemon.log_text();
    let resumed = format!("resume_after=Some([\"{done_up_to}\"])");
    assert!(
        log.contains(&resumed),
        "expected {resumed} in the log:\n{log}"
    );

    let lines = support::read_jsonl(&s.output());
    let mut reads: BTreeMap<i64, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["op"] == "r") {
        *reads.entry(l["after"]["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(reads.len(), 100_000, "every row was read");
    let reread = reads.range(..=done_up_to).filter(|(_, &n)| n > 1).count();
    assert_eq!(
        reread, 0,
        "rows of chunks finished before the kill were read again"
    );
    assert_eq!(replay(&lines), s.source().await);
}

#[tokio::test]
async fn a_table_is_snapshotted_again_on_demand() {
    let s = Setup::new("snap_demand", 1000).await;
    let pipeline = s.pipeline("never", 300);
    let mut daemon = s.start(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("UPDATE t SET v = -1 WHERE id = 5")
        .await
        .unwrap();
    let output = s.output();
    let seen = support::try_wait_for(Duration::from_secs(60), || {
        let n = support::read_jsonl(&output).len();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert!(
        seen.is_some(),
        "the update was not captured; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        support::read_jsonl(&output)
            .iter()
            .filter(|l| l["op"] == "r")
            .count(),
        0,
        "mode never: no snapshot"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["snapshot", "--table", "public.t", "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_progress("the requested snapshot to finish", &daemon, |t| {
        t["done"] == true
    })
    .await;
    s.caught_up(&daemon).await;
    assert_eq!(daemon.terminate(), Some(0));
    let lines = support::read_jsonl(&output);
    assert_eq!(lines.iter().filter(|l| l["op"] == "r").count(), 1000);
    assert_eq!(replay(&lines), s.source().await);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["snapshot", "--table", "public.nope", "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("public.nope is not in source.tables"));
}
