//! Ways a committed change could be lost, invented or misnamed on the capture side, each
//! against a real PostgreSQL 15: the publication's shape, stray watermarks, a lost slot
//! behind an empty output, partitions PostgreSQL does not replicate, and a transaction whose
//! commit record precedes its visibility.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use support::{exit_status, Daemon, Setup};

const PARTITIONED: &str = "
    CREATE TABLE parts (tenant int NOT NULL, id int NOT NULL, v text, PRIMARY KEY (tenant, id))
        PARTITION BY LIST (tenant);
    CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);
    CREATE TABLE parts_2 PARTITION OF parts FOR VALUES IN (2);
    CREATE TABLE plain (id int PRIMARY KEY, v text);";

impl Setup {
    /// A jsonl pipeline over `tables`; `snapshot` picks the snapshot mode.
    fn guarded(&self, tables: &[&str], snapshot: &str) -> PathBuf {
        let path = self.dir.path().join("pipeline.yaml");
        let yaml = support::pipeline_yaml(&self.db.url, &self.slot, &self.slot, tables, "1s")
            .replace(
                "source:\n",
                &format!("source:\n  snapshot: {{ mode: {snapshot}, chunk_rows: 20 }}\n"),
            );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("changes.jsonl")
    }

    fn run(&self, pipeline: &std::path::Path) -> Daemon {
        Daemon::start(
            pipeline,
            &self.output(),
            &self.dir.path().join("freshet.log"),
        )
    }

    async fn lines_where(
        &self,
        what: &str,
        daemon: &Daemon,
        done: impl Fn(&[Json]) -> bool,
    ) -> Vec<Json> {
        let out = self.output();
        support::wait_for(
            &format!("{what}; log:\n{}", daemon.log_text()),
            Duration::from_secs(120),
            || {
                let lines = support::read_jsonl(&out);
                let ok = done(&lines);
                async move { ok.then_some(lines) }
            },
        )
        .await
    }

    /// `parts` as the source holds it, keyed as the replay keys it.
    async fn parts(&self) -> BTreeMap<String, Json> {
        self.client
            .query("SELECT tenant, id, v FROM parts", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let (tenant, id, v): (i32, i32, Option<String>) = (r.get(0), r.get(1), r.get(2));
                (
                    format!("{tenant},{id}"),
                    serde_json::json!({ "tenant": tenant, "id": id, "v": v }),
                )
            })
            .collect()
    }
}

/// `parts` after the captured changes (lenient: snapshot reads may follow changes).
fn replay_parts(lines: &[Json]) -> BTreeMap<String, Json> {
    support::replay(lines, |_| vec!["tenant", "id"], false)
        .remove("parts")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, row)| {
            let row =
                serde_json::json!({ "tenant": row["tenant"], "id": row["id"], "v": row["v"] });
            (k, row)
        })
        .collect()
}

#[tokio::test]
async fn a_publication_of_partitions_under_their_own_names_is_refused_before_streaming() {
    let s = Setup::new("guard_viaroot", PARTITIONED).await;
    // A DBA's publication with the default options: pgoutput names changes after the leaves.
    s.client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE parts, plain",
            s.slot
        ))
        .await
        .unwrap();
    let pipeline = s.guarded(&["public.parts", "public.plain"], "never");

    let (code, out) = support::check(&pipeline);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "ALTER PUBLICATION \"{}\" SET (publish_via_partition_root = true)",
            s.slot
        )),
        "{out}"
    );
    assert!(
        !out.contains("ADD TABLE public.parts"),
        "PostgreSQL rejects adding a member again: {out}"
    );

    let mut daemon = s.run(&pipeline);
    let status = exit_status(&mut daemon).await;
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "an operator must fix it: {log}");
    assert!(log.contains("publish_via_partition_root"), "{log}");
    assert_eq!(
        support::confirmed_flush(&s.client, &s.slot).await,
        None,
        "refused before the slot was made"
    );

    // Fixed as told, the same table streams under its own name.
    s.client
        .batch_execute(&format!(
            "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
            s.slot
        ))
        .await
        .unwrap();
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO parts VALUES (1, 1, 'a'), (2, 1, 'b')")
        .await
        .unwrap();
    let lines = s
        .lines_where("two inserts", &daemon, |l| l.len() >= 2)
        .await;
    assert!(lines.iter().all(|l| l["table"] == "parts"), "{lines:?}");
    assert_eq!(daemon.terminate(), Some(0));

    // A partition configured in place of its root, which is published via the root: its
    // changes would arrive as the root's, so the fix is to capture the root.
    let leaf = s.guarded(&["public.parts_1"], "never");
    let (code, out) = support::check(&leaf);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("public.parts_1 is a partition of public.parts")
            && out.contains("capture public.parts instead")
            && !out.contains("ADD TABLE public.parts_1"),
        "{out}"
    );
    let pipeline = s.guarded(&["public.parts", "public.plain"], "never");

    // A captured table dropped from the publication while Freshet was down.
    s.client
        .batch_execute(&format!("ALTER PUBLICATION {} DROP TABLE plain", s.slot))
        .await
        .unwrap();
    let mut daemon = s.run(&pipeline);
    let status = exit_status(&mut daemon).await;
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "ALTER PUBLICATION \"{}\" ADD TABLE public.plain",
            s.slot
        )),
        "{log}"
    );
}

#[tokio::test]
async fn a_change_under_a_partition_name_stops_capture_before_it_is_confirmed() {
    let s = Setup::new("guard_leaf", PARTITIONED).await;
    s.client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE parts WITH (publish_via_partition_root = true)",
            s.slot
        ))
        .await
        .unwrap();
    let pipeline = s.guarded(&["public.parts"], "never");
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO parts VALUES (1, 1, 'before')")
        .await
        .unwrap();
    s.lines_where("the first insert", &daemon, |l| l.len() == 1)
        .await;
    // Switched off while Freshet streams: later changes arrive named after the leaf.
    s.client
        .batch_execute(&format!(
            "ALTER PUBLICATION {} SET (publish_via_partition_root = false)",
            s.slot
        ))
        .await
        .unwrap();
    s.client
        .batch_execute("INSERT INTO parts VALUES (2, 7, 'under the leaf name')")
        .await
        .unwrap();
    let status = exit_status(&mut daemon).await;
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("arrived under the name of its partition public.parts_2"),
        "{log}"
    );
    let lines = support::read_jsonl(&s.output());
    assert_eq!(lines.len(), 1, "nothing of the leaf was written: {lines:?}");
    // The slot still holds the insert: nothing past it was confirmed.
    let pending: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1::text::name, NULL, NULL,
               'proto_version', '1', 'publication_names', $1::text)
             WHERE substring(data FROM 1 FOR 1) = 'I'::bytea",
            &[&s.slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 1, "the leaf's insert is still in the slot");
}

#[tokio::test]
async fn stray_watermarks_are_ignored_and_the_snapshot_completes() {
    let s = Setup::new(
        "guard_marks",
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 2000) g;",
    )
    .await;
    s.publish("t").await;
    let pipeline = s.guarded(&["public.t"], "initial");
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    // What Freshet did not write: a non-transactional mark naming this slot, and
    // transactional low marks of another run, written while the snapshot's windows open
    // and close (a stray low mark must not replace the open window).
    let stray = |chunk: u64| {
        serde_json::json!({
            "run": 12345, "chunk": chunk, "high": false, "table": "public.t",
            "key": ["id"], "slot": s.slot,
        })
        .to_string()
    };
    s.client
        .execute(
            "SELECT pg_logical_emit_message(false, 'freshet.snapshot', $1)",
            &[&stray(1)],
        )
        .await
        .unwrap();
    for chunk in 2..200u64 {
        s.client
            .execute(
                "SELECT pg_logical_emit_message(true, 'freshet.snapshot', $1)",
                &[&stray(chunk)],
            )
            .await
            .unwrap();
    }
    s.client
        .batch_execute("UPDATE t SET v = -1 WHERE id = 1999; INSERT INTO t VALUES (5000, 5)")
        .await
        .unwrap();
    s.lines_where("the whole snapshot and the writes", &daemon, |lines| {
        let reads = lines.iter().filter(|l| l["op"] == "r").count();
        reads >= 2000 - 1 && lines.iter().any(|l| l["op"] == "c")
    })
    .await;
    assert!(daemon.running(), "never fatal: {}", daemon.log_text());
    assert_eq!(daemon.terminate(), Some(0));
    let lines = support::read_jsonl(&s.output());
    let source: BTreeMap<String, Json> = s
        .client
        .query("SELECT id, v FROM t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let (id, v): (i32, i32) = (r.get(0), r.get(1));
            (id.to_string(), serde_json::json!({ "id": id, "v": v }))
        })
        .collect();
    let replayed = support::replay(&lines, |_| vec!["id"], false)
        .remove("t")
        .unwrap_or_default();
    assert_eq!(replayed, source);
}

#[tokio::test]
async fn a_lost_slot_is_not_recreated_when_the_output_is_still_empty() {
    let s = Setup::new("guard_lost_empty", "CREATE TABLE t (id int PRIMARY KEY)").await;
    s.publish("t").await;
    let pipeline = s.guarded(&["public.t"], "never");
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    // Nothing captured yet: the output is empty, only heartbeats went by.
    assert_eq!(daemon.terminate(), Some(0));
    assert!(support::read_jsonl(&s.output()).is_empty());
    s.client
        .execute("SELECT pg_drop_replication_slot($1)", &[&s.slot])
        .await
        .unwrap();
    // Written while the slot was missing: a new slot would start after it.
    s.client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    let mut daemon = s.run(&pipeline);
    let status = exit_status(&mut daemon).await;
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("replication slot {:?} is lost", s.slot)),
        "{log}"
    );
    assert_eq!(
        support::confirmed_flush(&s.client, &s.slot).await,
        None,
        "the slot must not be silently recreated"
    );
}

#[tokio::test]
async fn partition_blind_spots_are_warned_and_a_snapshot_after_attach_converges() {
    let s = Setup::new("guard_attach", PARTITIONED).await;
    let pipeline = s.guarded(&["public.parts"], "never");
    // Freshet creates the publication, via the root.
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    let (code, out) = support::check(&pipeline);
    assert_eq!(code, Some(0), "a warning is not a problem: {out}");
    assert!(
        out.contains("WARN  public.parts is published via its partition root")
            && out.contains("truncate the root")
            && out.contains("freshet snapshot --table"),
        "{out}"
    );
    assert!(
        daemon
            .log_text()
            .contains("ATTACH PARTITION of a populated table"),
        "run says it too: {}",
        daemon.log_text()
    );
    // Each statement its own transaction, as an application would run them.
    for sql in [
        "INSERT INTO parts VALUES (1, 1, 'one'), (2, 2, 'two')",
        "CREATE TABLE parts_3 (LIKE parts INCLUDING ALL)",
        "INSERT INTO parts_3 VALUES (3, 1, 'attached'), (3, 2, 'attached')",
        "ALTER TABLE parts ATTACH PARTITION parts_3 FOR VALUES IN (3)",
        "INSERT INTO parts VALUES (3, 3, 'after')",
    ] {
        s.client.batch_execute(sql).await.unwrap();
    }
    let lines = s
        .lines_where("three inserts", &daemon, |l| l.len() >= 3)
        .await;
    let before = replay_parts(&lines);
    assert_eq!(
        before.len(),
        3,
        "the attached rows were not replicated: {before:?}"
    );
    assert_ne!(before, s.parts().await);

    // The documented remedy: snapshot the root again.
    let (code, out) = support::freshet(&[
        "snapshot".as_ref(),
        "--pipeline".as_ref(),
        pipeline.as_os_str(),
        "--table".as_ref(),
        "public.parts".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let expected = s.parts().await;
    let lines = s
        .lines_where("the attached rows", &daemon, |l| {
            replay_parts(l) == expected
        })
        .await;
    assert_eq!(replay_parts(&lines), expected);
    // A TRUNCATE of the root is replicated (of one leaf it would not be).
    s.client.batch_execute("TRUNCATE parts").await.unwrap();
    s.lines_where("the truncate", &daemon, |l| {
        l.iter().any(|l| l["op"] == "t")
    })
    .await;
    assert_eq!(daemon.terminate(), Some(0));
}

/// Holds a transaction between its commit record and its visibility with synchronous
/// replication: the cluster waits for a standby that never comes, so a transaction that asks
/// for it (synchronous_commit = on) has written and flushed its commit record but stays
/// invisible until its wait is cancelled. Everything else commits locally.
#[tokio::test]
async fn a_committed_but_invisible_transaction_above_xmax_makes_the_chunk_stale() {
    use freshet::source::snapshot::{read_chunk, Watermark, Windows};

    let cluster = support::OwnCluster::start(&[
        "synchronous_standby_names=nobody",
        "synchronous_commit=local",
    ]);
    let admin = support::connect(&cluster.url).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old')",
        )
        .await
        .unwrap();
    // The low watermark's transaction takes its xid first and commits after the held one's
    // commit record: the snapshot's xmax then ends at or below the held xid, which is in no
    // in-progress list (the group-commit order the old guard missed). The worker's one
    // statement has the same two steps; here they are apart, so the order is certain.
    let low_mark = support::connect(&cluster.url).await;
    low_mark
        .batch_execute("BEGIN; SELECT pg_logical_emit_message(true, 'freshet.snapshot', 'low')")
        .await
        .unwrap();
    let held = support::connect(&cluster.url).await;
    let held_pid: i32 = held
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    held.batch_execute("BEGIN; SET LOCAL synchronous_commit = on")
        .await
        .unwrap();
    let held_xid: i64 = held
        .query_one(
            "UPDATE t SET v = 'new' WHERE id = 1 RETURNING pg_current_xact_id()::text::int8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let commit = tokio::spawn(async move { held.batch_execute("COMMIT").await });
    let committed_by: String = support::wait_for(
        "the commit to wait for the standby",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                admin
                    .query_opt(
                        "SELECT pg_current_wal_insert_lsn()::text FROM pg_stat_activity
                     WHERE pid = $1 AND wait_event = 'SyncRep'",
                        &[&held_pid],
                    )
                    .await
                    .unwrap()
                    .map(|r| r.get(0))
            }
        },
    )
    .await;
    low_mark.batch_execute("COMMIT").await.unwrap();
    // At or past the low watermark's commit, which follows the held commit in the WAL.
    let low: String = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    // What any snapshot taken now sees: the held xid is at or above xmax, in no list.
    let snapshot_text: String = admin
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut parts = snapshot_text.split(':');
    let (_, xmax, xip) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert!(
        xmax.parse::<i64>().unwrap() <= held_xid
            && !xip.split(',').any(|x| x == held_xid.to_string()),
        "the held xid {held_xid} is at or above the xmax of {snapshot_text}, in no in-progress list"
    );
    // The worker's own read of a chunk.
    let table = freshet::config::TableName {
        schema: "public".into(),
        table: "t".into(),
    };
    let (invisible, _, rows) = read_chunk(&admin, &table, &["id".into()], None, 10)
        .await
        .unwrap();
    assert_eq!(
        rows[0].1[1].as_deref(),
        Some("old"),
        "the held update is invisible to the chunk"
    );
    assert!(invisible.contains(held_xid as u32), "{snapshot_text}");

    let mut windows = Windows::default();
    let low: freshet::lsn::Lsn = low.parse().unwrap();
    let committed_by: freshet::lsn::Lsn = committed_by.parse().unwrap();
    assert!(
        committed_by < low,
        "the low watermark follows the held commit"
    );
    windows.committed(held_xid as u32, committed_by);
    windows.low(
        Watermark {
            run: 1,
            chunk: 1,
            high: false,
            table: "public.t".into(),
            key: vec!["id".into()],
            slot: "s".into(),
            truncated: false,
        },
        low,
    );
    assert!(
        windows.stale(&invisible),
        "an older chunk row would overwrite the newer update"
    );

    // Released, the update becomes visible (and is committed, not lost).
    admin
        .query_one("SELECT pg_cancel_backend($1)", &[&held_pid])
        .await
        .unwrap();
    commit.await.unwrap().unwrap();
    let v: String = admin
        .query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "new");
}

#[tokio::test]
async fn a_toasted_key_an_update_left_alone_is_taken_from_the_old_row() {
    // 2,200 bytes of key, stored out of line uncompressed (EXTERNAL), yet small enough for
    // the btree: an update of another column sends the key as "unchanged" in the new row.
    // PostgreSQL 15 then logs the old key (DEFAULT) or the whole old row (FULL) inline.
    let s = Setup::new(
        "guard_toast_key",
        "CREATE TABLE toast_full (k text PRIMARY KEY, v int);
         CREATE TABLE toast_key (k text PRIMARY KEY, v int);
         ALTER TABLE toast_full ALTER COLUMN k SET STORAGE EXTERNAL, REPLICA IDENTITY FULL;
         ALTER TABLE toast_key ALTER COLUMN k SET STORAGE EXTERNAL;",
    )
    .await;
    s.publish("toast_full, toast_key").await;
    let pipeline = s.guarded(&["public.toast_full", "public.toast_key"], "never");
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    let key = "k".repeat(2200);
    for sql in [
        "INSERT INTO toast_full VALUES ($1, 1)",
        "INSERT INTO toast_key VALUES ($1, 1)",
    ] {
        s.client.execute(sql, &[&key]).await.unwrap();
    }
    let stored: i32 = s
        .client
        .query_one("SELECT pg_column_size(k) FROM toast_key", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2200, "stored out of line, uncompressed");
    s.client
        .batch_execute("UPDATE toast_full SET v = 2; UPDATE toast_key SET v = 2")
        .await
        .unwrap();
    let lines = s
        .lines_where("both updates", &daemon, |l| l.len() >= 4)
        .await;
    assert_eq!(daemon.terminate(), Some(0));
    for update in &lines[2..] {
        assert_eq!(update["op"], "u", "{update}");
        assert_eq!(
            update["after"]["k"],
            Json::from(key.clone()),
            "the key, from the old row"
        );
        assert_eq!(update["after"]["v"], Json::from(2));
        assert!(
            !update["unchanged"]
                .as_array()
                .unwrap()
                .contains(&Json::from("k")),
            "{update}"
        );
    }
}

#[tokio::test]
async fn snapshot_rows_take_the_tables_shape_at_chunk_time_and_filtered_publications_are_refused() {
    let s = Setup::new(
        "guard_shape",
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 3) g;",
    )
    .await;
    s.publish("t").await;
    let pipeline = s.guarded(&["public.t"], "never");
    let mut daemon = s.run(&pipeline);
    s.slot_ready(&daemon).await;
    // The stream learns the table's shape from this change's Relation message.
    s.client
        .batch_execute("UPDATE t SET v = 10 WHERE id = 1")
        .await
        .unwrap();
    s.lines_where("the update", &daemon, |l| l.len() == 1).await;
    let snapshot = || {
        let (code, out) = support::freshet(&[
            "snapshot".as_ref(),
            "--pipeline".as_ref(),
            pipeline.as_os_str(),
            "--table".as_ref(),
            "public.t".as_ref(),
        ]);
        assert_eq!(code, Some(0), "{out}");
    };
    let reads = |lines: &[Json]| -> Vec<Json> {
        lines
            .iter()
            .filter(|l| l["op"] == "r")
            .map(|l| l["after"].clone())
            .collect()
    };

    // A column added with no change since: the snapshot's rows still have it.
    s.client
        .batch_execute("ALTER TABLE t ADD COLUMN c int DEFAULT 5")
        .await
        .unwrap();
    snapshot();
    let lines = s
        .lines_where("three reads", &daemon, |l| reads(l).len() >= 3)
        .await;
    assert_eq!(
        reads(&lines),
        [
            serde_json::json!({ "id": 1, "v": 10, "c": 5 }),
            serde_json::json!({ "id": 2, "v": 2, "c": 5 }),
            serde_json::json!({ "id": 3, "v": 3, "c": 5 }),
        ]
    );
    // A column dropped: no NULL is invented for it.
    s.client
        .batch_execute("ALTER TABLE t DROP COLUMN v")
        .await
        .unwrap();
    snapshot();
    let lines = s
        .lines_where("three more reads", &daemon, |l| reads(l).len() >= 6)
        .await;
    assert_eq!(
        reads(&lines)[3..],
        [
            serde_json::json!({ "id": 1, "c": 5 }),
            serde_json::json!({ "id": 2, "c": 5 }),
            serde_json::json!({ "id": 3, "c": 5 }),
        ]
    );
    // And a change after it streams in the same shape.
    s.client
        .batch_execute("INSERT INTO t VALUES (4, 6)")
        .await
        .unwrap();
    let lines = s.lines_where("the insert", &daemon, |l| l.len() >= 8).await;
    assert_eq!(lines[7]["after"], serde_json::json!({ "id": 4, "c": 6 }));
    assert_eq!(daemon.terminate(), Some(0));

    // A column list or a row filter would stream part of what the snapshot reads.
    for (set, said) in [
        ("SET TABLE t (id)", "its column list leaves out c"),
        ("SET TABLE t WHERE (id > 2)", "row filter WHERE (id > 2)"),
    ] {
        s.client
            .batch_execute(&format!("ALTER PUBLICATION {} {set}", s.slot))
            .await
            .unwrap();
        let mut daemon = s.run(&pipeline);
        let status = exit_status(&mut daemon).await;
        let log = daemon.log_text();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains(&format!("sends only part of public.t: {said}")),
            "{log}"
        );
    }
}
