//! The warehouse end to end: PostgreSQL 15 → `freshet run` → Tansu → the lake → the loader →
//! the embedded PostgreSQL warehouse, compared with the source by SQL (`EXCEPT ALL` both
//! ways: duplicate rows count) for a keyed table, the EAV value table and a table without a
//! key.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::atlasco::*;
use support::kafka::{Broker, Engine};
use support::warehouse::{digest, ledger_rows, wait_equal, warehouse_yaml};
use support::{Daemon, Setup};

/// A table keyed by text (keys longer than Redshift's default VARCHAR(256)), and one without
/// a key whose duplicate rows must all arrive.
const EXTRA_DDL: &str = "
CREATE TABLE public.docs (id text PRIMARY KEY, n int NOT NULL DEFAULT 0, body text);
CREATE TABLE public.notes (n int, body text);
ALTER TABLE public.notes REPLICA IDENTITY FULL;";

const TABLES: [&str; 6] = [
    "atlasco.tenants",
    "atlasco.attributes",
    "atlasco.entities",
    "atlasco.entity_values",
    "public.docs",
    "public.notes",
];

/// A text long enough to be TOASTed (stored out of line), different per `seed`.
fn big(seed: &str) -> String {
    format!("(SELECT string_agg(md5('{seed}' || g), '') FROM generate_series(1, 300) g)")
}

impl Setup {
    async fn warehouse(prefix: &str) -> Setup {
        let s = Setup::new(prefix, &format!("{}\n{EXTRA_DDL}", support::schema_sql())).await;
        s.client
            .batch_execute(ATLASCO_FIXTURES)
            .await
            .expect("fixtures");
        s.publish_tables().await;
        s
    }

    /// A publication of [`TABLES`], partitions as their root.
    async fn publish_tables(&self) {
        self.client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                self.slot,
                TABLES.join(", ")
            ))
            .await
            .expect("publication");
    }

    /// Every table into a local lake (small files, closed within a second) and on into the
    /// warehouse in this database, loaded at least every second.
    fn warehouse_pipeline(&self, brokers: &str) -> PathBuf {
        let lake = self.dir.path().join("lake");
        let extra = format!(
            "{EAV}batcher:\n  store: file://{}\n  rotation:\n    max_rows: 400\n    max_age: 1s\n{}",
            lake.display(),
            warehouse_yaml(&self.db.url, &TABLES, "2s")
        );
        self.kafka_pipeline(&TABLES, brokers, &extra, true)
    }
}

/// Inserts, updates, deletes, a key change, TOAST-unchanged updates, TRUNCATE, duplicate
/// rows; one statement list per transaction.
fn workload() -> Vec<String> {
    let mut w: Vec<String> = [
        "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) SELECT 1 + g % 4, g, 'device' FROM generate_series(1, 300) g",
        "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value) SELECT 1 + g % 4, g, 1, 'status-' || g FROM generate_series(1, 300) g",
        "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, float_value) SELECT 1 + g % 4, g, 2, g * 0.1 FROM generate_series(1, 300) g",
        "UPDATE atlasco.entity_values SET float_value = float_value + 1 WHERE attribute_id = 2 AND entity_id % 3 = 0",
        "DELETE FROM atlasco.entity_values WHERE attribute_id = 1 AND entity_id % 5 = 0",
        "UPDATE atlasco.entities SET entity_id = entity_id + 100000 WHERE entity_id <= 6",
        "UPDATE atlasco.entities SET entity_type = 'sensor' WHERE entity_id % 7 = 0",
        "DELETE FROM atlasco.entities WHERE entity_id % 11 = 0",
        "INSERT INTO public.notes SELECT g % 20, 'note ' || (g % 20) FROM generate_series(1, 60) g",
        "UPDATE public.notes SET body = body || ' edited' WHERE n % 4 = 0",
        "DELETE FROM public.notes WHERE n % 7 = 0",
        "DELETE FROM public.notes WHERE ctid = (SELECT ctid FROM public.notes WHERE n = 1 LIMIT 1)",
        "TRUNCATE atlasco.entity_values",
        "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, integer_value) SELECT 1 + g % 4, g, 3, g * 10 FROM generate_series(1, 150) g",
        "UPDATE atlasco.entity_values SET integer_value = integer_value + 1 WHERE entity_id % 2 = 0",
        "UPDATE atlasco.tenants SET name = name || '!' WHERE tenant_id = 2",
    ]
    .map(str::to_owned)
    .to_vec();
    // TOASTed values: set, left unchanged by updates of other columns, set again; three
    // updates of one key in one transaction (one batch), unchanged / set / unchanged.
    w.push(format!(
        "INSERT INTO public.docs (id, body) SELECT 'doc-' || g, {} FROM generate_series(1, 5) g",
        big("a")
    ));
    // Loaded before the updates below: their unchanged bodies come from the warehouse.
    w.push(LOADED.into());
    w.push("UPDATE public.docs SET n = n + 1 WHERE id IN ('doc-1', 'doc-2')".into());
    w.push(format!(
        "UPDATE public.docs SET n = n + 1 WHERE id = 'doc-3'; \
         UPDATE public.docs SET body = {} WHERE id = 'doc-3'; \
         UPDATE public.docs SET n = n + 1 WHERE id = 'doc-3'",
        big("b")
    ));
    w.push("UPDATE public.docs SET n = n + 10 WHERE id = 'doc-4'".into());
    // Insert then delete of one key in one transaction: the warehouse never sees the row.
    w.push(
        "INSERT INTO public.docs (id) VALUES ('brief'); DELETE FROM public.docs WHERE id = 'brief'"
            .into(),
    );
    // A key change that leaves the TOASTed body unchanged: the body follows the row.
    w.push("UPDATE public.docs SET id = 'doc-5-moved' WHERE id = 'doc-5'".into());
    // An EAV value moved to another attribute: Kafka's key (the entity) stays, the row's
    // key changes; the old row must go.
    w.push(
        "UPDATE atlasco.entity_values SET attribute_id = 1 WHERE attribute_id = 3 AND entity_id % 10 = 1"
            .into(),
    );
    // Two keys equal in their first 256 bytes.
    w.push(
        "INSERT INTO public.docs (id, body) VALUES (repeat('k', 256) || 'a', 'first'), \
         (repeat('k', 256) || 'b', 'second')"
            .into(),
    );
    w.push(
        "UPDATE public.docs SET body = 'second, edited' WHERE id = repeat('k', 256) || 'b'".into(),
    );
    // A TRUNCATE of the table without a key, then duplicate rows again.
    w.push("TRUNCATE public.notes".into());
    w.push("INSERT INTO public.notes VALUES (1, 'again'), (1, 'again'), (2, NULL), (2, NULL), (2, NULL)".into());
    w.push(
        "DELETE FROM public.notes WHERE ctid = (SELECT ctid FROM public.notes WHERE n = 2 LIMIT 1)"
            .into(),
    );
    w
}

/// A transaction rolled back: nothing of it may reach the warehouse. (Its own round trip:
/// a BEGIN inside a multi-statement query takes the statements before it along.)
const ROLLED_BACK: &str =
    "BEGIN; INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) VALUES (1, 999999, 'ghost'); DELETE FROM public.docs; ROLLBACK;";

/// A workload step that waits until the docs so far are in the warehouse.
const LOADED: &str = "-- loaded";

async fn run_workload(s: &Setup) {
    for (i, statement) in workload().iter().enumerate() {
        if statement == LOADED {
            support::wait_for("the docs loaded", Duration::from_secs(60), || async {
                let loaded = s
                    .client
                    .query_one(
                        "SELECT count(*) FROM analytics.docs WHERE length(body) > 9000",
                        &[],
                    )
                    .await
                    .is_ok_and(|r| r.get::<_, i64>(0) == 5);
                loaded.then_some(())
            })
            .await;
            continue;
        }
        s.client
            .batch_execute(&format!("BEGIN; {statement}; COMMIT"))
            .await
            .unwrap_or_else(|e| panic!("workload step {i}: {e}"));
        if i == 8 {
            s.client.batch_execute(ROLLED_BACK).await.expect("rollback");
        }
    }
}

/// Each statement in its own transaction, in order.
async fn execute_each(s: &Setup, steps: &[impl AsRef<str>]) {
    for step in steps {
        let step = step.as_ref();
        s.client.batch_execute(step).await.expect(step);
    }
}

/// A delete of a key the warehouse never had: its insert was not published.
async fn delete_unseen_key(s: &Setup) {
    let publication = &s.slot;
    execute_each(
        s,
        &[
            format!("ALTER PUBLICATION {publication} DROP TABLE public.docs"),
            "INSERT INTO public.docs (id, body) VALUES ('unseen', 'x')".into(),
            format!("ALTER PUBLICATION {publication} ADD TABLE public.docs"),
            "DELETE FROM public.docs WHERE id = 'unseen'".into(),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_equals_the_source_after_a_mixed_workload() {
    let s = Setup::warehouse("wh_mixed").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    run_workload(&s).await;
    delete_unseen_key(&s).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;

    // The TOASTed bodies arrived whole, never as a placeholder or NULL.
    let bodies = s
        .client
        .query(
            "SELECT d.id FROM public.docs d JOIN analytics.docs w USING (id) \
             WHERE length(w.body) > 9000 AND w.body = d.body",
            &[],
        )
        .await
        .expect("bodies");
    assert_eq!(
        bodies.len(),
        5,
        "every TOASTed body, whole (the moved one too)"
    );
    // Tombstones hold the deletes, and the view hides them.
    let tombstones: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM analytics_freshet.docs WHERE _freshet_deleted AND id IN ('brief', 'unseen')",
            &[],
        )
        .await
        .expect("tombstones")
        .get(0);
    assert_eq!(
        tombstones, 2,
        "a delete of a key never loaded is a tombstone"
    );

    // A restart loads nothing twice: the ledger covers the lake.
    let before = digests(&s).await;
    let ledger = ledger_rows(&s.client, "public.notes").await;
    daemon.kill9();
    let daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO public.notes VALUES (3, 'after the restart')")
        .await
        .expect("insert");
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    let after = digests(&s).await;
    for (i, t) in TABLES.iter().enumerate() {
        if *t == "public.notes" {
            assert_ne!(after[i], before[i], "{t} took the new row");
        } else {
            assert_eq!(after[i], before[i], "{t} changed across a restart");
        }
    }
    assert!(ledger_rows(&s.client, "public.notes").await > ledger);
    drop(daemon);
}

/// The lake is the log the warehouse is rebuilt from: a warehouse dropped and loaded again
/// from the same objects equals the source; loading them once more changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_warehouse_equals_the_source_and_a_reload_changes_nothing() {
    let s = Setup::warehouse("wh_rebuild").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    run_workload(&s).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    daemon.terminate();

    s.client
        .batch_execute("DROP SCHEMA analytics CASCADE; DROP SCHEMA analytics_freshet CASCADE")
        .await
        .expect("drop the warehouse");
    let daemon = sink_only(&s, &pipeline);
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    let loaded = digests(&s).await;
    drop(daemon);

    // The ledger forgets nothing, but loading every object again must not count on it: the
    // newer-wins merge and the identities of the multiset make a second load a no-op too.
    let mut ledger = Vec::new();
    for t in TABLES {
        ledger.push(ledger_rows(&s.client, t).await);
    }
    s.client
        .batch_execute("DELETE FROM analytics_freshet._freshet_ledger")
        .await
        .expect("forget the ledger");
    let daemon = sink_only(&s, &pipeline);
    support::wait_for(
        "every object loaded again",
        Duration::from_secs(60),
        || async {
            let mut now = Vec::new();
            for t in TABLES {
                now.push(ledger_rows(&s.client, t).await);
            }
            (now == ledger).then_some(())
        },
    )
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    assert_eq!(
        digests(&s).await,
        loaded,
        "a second load changed the warehouse"
    );
    drop(daemon);
}

fn sink_only(s: &Setup, pipeline: &std::path::Path) -> Daemon {
    Daemon::start_with(
        pipeline,
        &[
            "--role",
            "sink",
            "--state-dir",
            &s.dir.path().join("state").display().to_string(),
        ],
        &s.dir.path().join("sink.log"),
    )
}

async fn digests(s: &Setup) -> Vec<String> {
    let mut d = Vec::new();
    for t in TABLES {
        d.push(digest(&s.client, t.split_once('.').expect("schema.table").1).await);
    }
    d
}

/// Columns added and dropped at the source mid-stream: the warehouse follows (an added
/// column NULL in older rows, a dropped one kept and NULL in rows changed since) and still
/// equals the source. A type the warehouse cannot follow stops that table alone, naming it
/// and the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_follows_added_and_dropped_columns_and_stops_one_table_it_cannot_follow() {
    let s = Setup::warehouse("wh_evolve").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    execute_each(&s, &[
        "INSERT INTO public.docs (id, body) SELECT 'doc-' || g, 'v1' FROM generate_series(1, 20) g",
        "INSERT INTO public.notes SELECT g % 5, 'note' FROM generate_series(1, 20) g",
    ])
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    execute_each(&s, &[
        "ALTER TABLE public.docs ADD COLUMN tag text",
        "ALTER TABLE public.notes ADD COLUMN tag text",
        "UPDATE public.docs SET tag = 'tagged' WHERE id IN ('doc-1', 'doc-2')",
        "INSERT INTO public.docs (id, body, tag) VALUES ('doc-new', 'v1', 'new')",
        "INSERT INTO public.notes VALUES (9, 'with a tag', 'x'), (9, 'with a tag', 'x')",
        "DELETE FROM public.notes WHERE ctid = (SELECT ctid FROM public.notes WHERE n = 1 LIMIT 1)",
        "ALTER TABLE public.docs DROP COLUMN n",
        "ALTER TABLE public.notes DROP COLUMN body",
        "UPDATE public.docs SET body = 'v2' WHERE id IN ('doc-3', 'doc-new')",
        "UPDATE public.notes SET tag = 'y' WHERE n = 2",
        "DELETE FROM public.notes WHERE n = 3",
    ])
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    let n: Vec<Option<i32>> = s
        .client
        .query(
            "SELECT n FROM analytics.docs WHERE id IN ('doc-3', 'doc-4') ORDER BY id",
            &[],
        )
        .await
        .expect("the dropped column")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        n,
        vec![None, Some(0)],
        "dropped: NULL where changed since, kept elsewhere"
    );

    // integer → bigint: Avro promotes it, but the warehouse's column is an integer.
    execute_each(
        &s,
        &[
            "ALTER TABLE public.docs ADD COLUMN size integer",
            "UPDATE public.docs SET size = 1 WHERE id = 'doc-1'",
        ],
    )
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    execute_each(
        &s,
        &[
            "ALTER TABLE public.docs ALTER COLUMN size TYPE bigint",
            "UPDATE public.docs SET size = 5000000000 WHERE id = 'doc-2'",
            "UPDATE atlasco.tenants SET name = name || '?'",
            "UPDATE public.notes SET tag = 'after the stop' WHERE n = 2",
        ],
    )
    .await;
    let metrics = support::wait_for("a table stopped", Duration::from_secs(60), || async {
        let m = support::scrape(port);
        (support::events(&m, "table_stopped", "loader") >= 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        support::events(&metrics, "table_stopped", "loader"),
        1.0,
        "one table stopped"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("public.docs: column size: its type is now bigint"),
        "the stop names the table and the column: {log}"
    );
    // The other tables go on.
    wait_equal(
        &s.client,
        &["public.notes", "atlasco.tenants"],
        Duration::from_secs(60),
    )
    .await;
}

impl Setup {
    /// [`Setup::warehouse`]'s tables, filled by `freshet loadgen fill` for `freshet loadgen
    /// run` to write.
    async fn warehouse_filled(prefix: &str) -> Setup {
        let s = Setup::new(prefix, EXTRA_DDL).await;
        freshet_loadgen_fill(&s.db.url, 20);
        s.publish_tables().await;
        s
    }
}

/// One half of `freshet run`, with `/metrics` on a port of its own.
fn start_role(
    s: &Setup,
    pipeline: &std::path::Path,
    role: &str,
    env: &[(&str, String)],
) -> (Daemon, u16) {
    let port = support::kafka::free_port();
    let daemon = Daemon::start_env(
        pipeline,
        &[
            "--state-dir",
            &s.dir.path().join("state").display().to_string(),
            "--role",
            role,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &s.dir.path().join(format!("{role}.log")),
        env,
    );
    (daemon, port)
}

/// Changes to the docs and the notes beside a loadgen run: TOAST, duplicates, deletes.
async fn side_workload(s: &Setup, round: usize) {
    execute_each(
        s,
        &[
            format!(
            "INSERT INTO public.docs (id, body) VALUES ('doc-{round}', {}) ON CONFLICT (id) DO \
             UPDATE SET n = public.docs.n + 1",
            big(&round.to_string())
        ),
            format!(
                "UPDATE public.docs SET n = n + 1 WHERE id = 'doc-{}'",
                round / 2
            ),
            format!(
                "INSERT INTO public.notes VALUES ({0}, 'note'), ({0}, 'note')",
                round % 3
            ),
            "DELETE FROM public.notes WHERE ctid = (SELECT ctid FROM public.notes LIMIT 1)".into(),
        ],
    )
    .await;
}

/// The sink aborted at each boundary of its work (after an object's upload, before its
/// offset commit and manifest; after COPY; before the merge; after the ledger row, before
/// COMMIT), then started again: the warehouse equals the source, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_boundary_of_the_sink_leaves_the_warehouse_equal() {
    let s = Setup::warehouse_filled("wh_crash").await;
    // The durable engine: a restarted batcher fetches from inside a record batch, which the
    // memory engine gets wrong (see the README).
    let broker = Broker::start(Engine::Sqlite);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (capture, _) = start_role(&s, &pipeline, "capture", &[]);
    s.slot_ready(&capture).await;
    let mut round = 0;
    for point in [
        "batcher.after_upload",
        "loader.after_copy",
        "loader.before_merge",
        "loader.before_commit",
    ] {
        let (mut sink, _) = start_role(
            &s,
            &pipeline,
            "sink",
            &[("FRESHET_CRASH_AT", point.to_owned())],
        );
        // Changes until the sink reaches the point and aborts.
        support::wait_for(
            &format!("the sink to abort at {point}"),
            Duration::from_secs(60),
            || {
                round += 1;
                let r = round;
                let running = sink.running();
                let s = &s;
                async move {
                    if running {
                        side_workload(s, r).await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        None
                    } else {
                        Some(())
                    }
                }
            },
        )
        .await;
        assert!(
            sink.log_text()
                .contains(&format!("FRESHET_CRASH_AT={point}")),
            "the sink stopped elsewhere than {point}:\n{}",
            sink.log_text()
        );
    }
    let (sink, _) = start_role(&s, &pipeline, "sink", &[]);
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    drop((sink, capture));
}

/// `kill -9` of either half at moments no test lines up with, under load, several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_either_half_under_load_leaves_the_warehouse_equal() {
    let s = Setup::warehouse_filled("wh_kill").await;
    let broker = Broker::start(Engine::Sqlite);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (mut capture, _) = start_role(&s, &pipeline, "capture", &[]);
    s.slot_ready(&capture).await;
    let (mut sink, _) = start_role(&s, &pipeline, "sink", &[]);
    let load = loadgen_spawn(&s.db.url, 100, "14s");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos() as u64;
    for round in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        side_workload(&s, round).await;
        tokio::time::sleep(Duration::from_millis(1000 + (seed >> 33) % 2000)).await;
        if round % 2 == 0 {
            sink.kill9();
            sink = start_role(&s, &pipeline, "sink", &[]).0;
        } else {
            capture.kill9();
            capture = start_role(&s, &pipeline, "capture", &[]).0;
        }
    }
    finish(load);
    wait_equal(&s.client, &TABLES, Duration::from_secs(180)).await;
    drop((sink, capture));
}

/// A sink holding one share of the partitions (`--sink-share`), logging to a file of its own.
fn start_share(s: &Setup, pipeline: &std::path::Path, share: &str) -> Daemon {
    Daemon::start_with(
        pipeline,
        &[
            "--state-dir",
            &s.dir.path().join("state").display().to_string(),
            "--role",
            "sink",
            "--sink-share",
            share,
            "--listen",
            "127.0.0.1:0",
        ],
        &s.dir
            .path()
            .join(format!("sink-{}.log", share.replace('/', "-"))),
    )
}

/// A key change's two halves travel on different partitions and may load far apart, in
/// either order; two sink shares force each order. The TOASTed body the update left
/// unchanged follows the row: when the create loads first and later changes of the new key
/// keep the body (in its own load and in the same one), and when the delete loads first
/// and the old key is reused before the create loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_keeps_its_toasted_value_whichever_half_loads_first() {
    let s = Setup::warehouse("wh_moved").await;
    let broker = Broker::start(Engine::Sqlite);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (capture, _) = start_role(&s, &pipeline, "capture", &[]);
    s.slot_ready(&capture).await;
    // Where keys land: share 0/2 holds partitions 0 and 2, share 1/2 partitions 1 and 3.
    execute_each(
        &s,
        &[
            "INSERT INTO public.docs (id) SELECT 'k-' || g FROM generate_series(0, 31) g",
            "DELETE FROM public.docs WHERE id LIKE 'k-%'",
        ],
    )
    .await;
    let placed = support::wait_for(
        "the candidate keys in Kafka",
        Duration::from_secs(60),
        || async {
            let lines = support::kafka::topic_lines(&pipeline, "public.docs").await;
            let placed: std::collections::BTreeMap<String, i64> = lines
                .iter()
                .filter_map(|l| {
                    Some((
                        l["key"]["id"].as_str()?.to_owned(),
                        l["partition"].as_i64()?,
                    ))
                })
                .collect();
            (placed.len() == 32).then_some(placed)
        },
    )
    .await;
    let mut first: Vec<&str> = placed
        .iter()
        .filter(|(_, p)| *p % 2 == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    let mut second: Vec<&str> = placed
        .iter()
        .filter(|(_, p)| *p % 2 == 1)
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(first.len() >= 3 && second.len() >= 3, "{placed:?}");
    // X and Z move from the second share's partitions to the first's, Y the other way.
    let (x_old, z_old, y_new) = (second.remove(0), second.remove(0), second.remove(0));
    let (x_new, z_new, y_old) = (first.remove(0), first.remove(0), first.remove(0));
    let mut both = (
        start_share(&s, &pipeline, "0/2"),
        start_share(&s, &pipeline, "1/2"),
    );
    execute_each(
        &s,
        &[format!(
            "INSERT INTO public.docs (id, body) VALUES ('{x_old}', {}), ('{y_old}', {}), ('{z_old}', {})",
            big("x"),
            big("y"),
            big("z")
        )],
    )
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(90)).await;
    both.1.kill9();
    execute_each(
        &s,
        &[
            format!("UPDATE public.docs SET id = '{x_new}' WHERE id = '{x_old}'"),
            format!("UPDATE public.docs SET id = '{y_new}' WHERE id = '{y_old}'"),
            format!("INSERT INTO public.docs (id, body) VALUES ('{y_old}', 'reused')"),
            format!(
                "BEGIN; UPDATE public.docs SET id = '{z_new}' WHERE id = '{z_old}'; \
                 UPDATE public.docs SET n = n + 1 WHERE id = '{z_new}'; COMMIT"
            ),
        ],
    )
    .await;
    // The first share loads the creates of X and Z and Y's delete and reuse; the creates
    // wait for their bodies, NULL meanwhile (never a stale value).
    let waiting = format!(
        "SELECT count(*) FROM analytics.docs WHERE (id IN ('{x_new}', '{z_new}') AND body IS NULL) \
         OR (id = '{y_old}' AND body = 'reused')"
    );
    support::wait_for(
        "the first share's loads",
        Duration::from_secs(60),
        || async {
            let n: i64 = s.client.query_one(&waiting, &[]).await.ok()?.get(0);
            (n == 3).then_some(())
        },
    )
    .await;
    execute_each(
        &s,
        &[format!(
            "UPDATE public.docs SET n = n + 1 WHERE id = '{x_new}'"
        )],
    )
    .await;
    let updated = format!(
        "SELECT count(*) FROM analytics.docs WHERE id = '{x_new}' AND n = 1 AND body IS NULL"
    );
    support::wait_for(
        "the later update of X loaded",
        Duration::from_secs(60),
        || async {
            let n: i64 = s.client.query_one(&updated, &[]).await.ok()?.get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    // Now the other halves: X's and Z's deletes, Y's create.
    both.1 = start_share(&s, &pipeline, "1/2");
    wait_equal(&s.client, &TABLES, Duration::from_secs(90)).await;
    let waits: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM analytics_freshet.docs WHERE _freshet_pending IS NOT NULL",
            &[],
        )
        .await
        .expect("waits")
        .get(0);
    assert_eq!(waits, 0, "a row still waits for a key change's values");
    drop((both, capture));
}

/// The warehouse unreachable for 60 s under load: the loader waits (a `stalled` event), the
/// objects stay in the lake, and it catches up by itself (`recovered`), losing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_down_for_a_minute_under_load_catches_up_by_itself() {
    let s = Setup::warehouse_filled("wh_down").await;
    let broker = Broker::start(Engine::Memory);
    let pg_port = s.db.config().get_ports()[0];
    let proxy = support::kafka::Proxy::start(support::kafka::free_port(), pg_port).await;
    let through_proxy =
        s.db.url
            .replace(&format!(":{pg_port}/"), &format!(":{}/", proxy.port));
    assert_ne!(
        through_proxy, s.db.url,
        "the warehouse URL goes through the proxy"
    );
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let yaml = std::fs::read_to_string(&pipeline).expect("pipeline");
    let warehouse_url = format!("    url: {}\n", s.db.url);
    assert!(yaml.contains(&warehouse_url));
    std::fs::write(
        &pipeline,
        yaml.replace(&warehouse_url, &format!("    url: {through_proxy}\n")),
    )
    .expect("pipeline");
    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;

    proxy.set(support::kafka::Mode::Refuse);
    let load = loadgen_spawn(&s.db.url, 100, "50s");
    for round in 0..10 {
        side_workload(&s, round).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let metrics = support::scrape(port);
    assert!(
        support::events(&metrics, "stalled", "loader") >= 1.0,
        "a stalled event while the warehouse is away:\n{metrics}"
    );
    assert_eq!(support::events(&metrics, "recovered", "loader"), 0.0);
    finish(load);
    proxy.set(support::kafka::Mode::Forward);
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    let metrics = support::scrape(port);
    assert_eq!(
        support::events(&metrics, "recovered", "loader"),
        1.0,
        "one recovered event:\n{metrics}"
    );
    assert!(daemon.log_text().contains("stalled: waiting for"));
}

/// Objects under the lake's prefix that Freshet did not write: one with a lake name that is
/// not Parquet, one of another table, and a stray file. Each named and skipped, never loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_foreign_object_is_skipped_and_named() {
    let s = Setup::warehouse("wh_foreign").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (mut daemon, _) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    side_workload(&s, 1).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    daemon.terminate();

    let lake = s.dir.path().join("lake");
    let object_of = |table: &str| {
        std::fs::read_dir(lake.join(table))
            .expect("objects")
            .flat_map(|d| std::fs::read_dir(d.expect("dir").path()).expect("objects"))
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .expect("an object")
    };
    // Named as the docs' own object (the batcher resumes where it did), in other directories.
    let name = object_of("public.docs")
        .file_name()
        .expect("name")
        .to_owned();
    let docs = lake.join("public.docs/dt=2026-01-01");
    let elsewhere = lake.join("public.docs/dt=2026-01-02");
    std::fs::create_dir_all(&docs).expect("dir");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::write(docs.join(&name), b"not parquet").expect("corrupt");
    std::fs::copy(object_of("public.notes"), elsewhere.join(&name)).expect("foreign");
    std::fs::write(docs.join("README.txt"), b"a stray file").expect("stray");
    // The docs loaded again from the lake, among them the strangers.
    s.client
        .batch_execute(
            "DELETE FROM analytics_freshet._freshet_ledger WHERE table_name = 'public.docs'",
        )
        .await
        .expect("forget the docs' ledger");

    let (daemon, port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    let metrics = support::wait_for("objects skipped", Duration::from_secs(60), || async {
        let m = support::scrape(port);
        (support::events(&m, "object_skipped", "loader") >= 2.0).then_some(m)
    })
    .await;
    assert_eq!(support::events(&metrics, "object_skipped", "loader"), 2.0);
    let log = daemon.log_text();
    let corrupt = format!("public.docs/dt=2026-01-01/{}", name.to_string_lossy());
    assert!(log.contains(&corrupt), "{log}");
    assert!(log.contains("not a readable Parquet file"), "{log}");
    assert!(
        log.contains("it holds public.notes, not public.docs"),
        "{log}"
    );
    side_workload(&s, 2).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    let ledger: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM analytics_freshet._freshet_ledger WHERE object_key LIKE '%/dt=2026-01-0_/%'",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(ledger, 0, "nothing of the skipped objects is in the ledger");
}

/// Tombstones past `warehouse.tombstone_retention`, and rows behind a TRUNCATE, leave the
/// change tables; the views are as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_past_retention_and_rows_behind_a_truncate_are_purged() {
    let s = Setup::warehouse("wh_purge").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let yaml = std::fs::read_to_string(&pipeline).expect("pipeline");
    std::fs::write(
        &pipeline,
        yaml.replace(
            "  schema: analytics\n",
            "  schema: analytics\n  tombstone_retention: 8s\n",
        ),
    )
    .expect("pipeline");
    let (mut daemon, _) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    execute_each(&s, &[
        "INSERT INTO public.docs (id, body) SELECT 'doc-' || g, 'x' FROM generate_series(1, 10) g",
        "DELETE FROM public.docs WHERE id IN ('doc-1', 'doc-2')",
        "INSERT INTO public.notes SELECT g, 'note' FROM generate_series(1, 10) g",
    ])
    .await;
    // Loaded before the TRUNCATE, so that rows lie behind its barrier.
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    s.client
        .batch_execute("TRUNCATE public.notes; INSERT INTO public.notes VALUES (1, 'after')")
        .await
        .expect("truncate");
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
    let count = |q: &'static str| {
        let client = &s.client;
        async move { client.query_one(q, &[]).await.expect(q).get::<_, i64>(0) }
    };
    let tombstones = "SELECT count(*) FROM analytics_freshet.docs WHERE _freshet_deleted";
    let notes = "SELECT count(*) FROM analytics_freshet.notes";
    assert_eq!(count(tombstones).await, 2);
    assert_eq!(
        count(notes).await,
        11,
        "ten deltas behind the barrier, one after it"
    );
    // Purges run once per start of the loader and hourly: a start after the retention.
    tokio::time::sleep(Duration::from_secs(8)).await;
    daemon.terminate();
    let (daemon, _) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("UPDATE public.docs SET n = 1 WHERE id = 'doc-3'; INSERT INTO public.notes VALUES (2, 'later')")
        .await
        .expect("changes");
    support::wait_for("the purge", Duration::from_secs(60), || async {
        (count(tombstones).await == 0 && count(notes).await == 2).then_some(())
    })
    .await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
}

/// `freshet replay --table T`: a table whose warehouse rows and lake objects were lost is
/// rebuilt from its topic and equals the source; replaying it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_a_table_from_its_topic_and_again_changes_nothing() {
    let s = Setup::warehouse("wh_replay").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.warehouse_pipeline(&broker.brokers());
    let (mut daemon, _) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    run_workload(&s).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    daemon.terminate();

    // The warehouse's docs and notes lost, and the lake's docs with them.
    s.client
        .batch_execute("DELETE FROM analytics_freshet.docs; DELETE FROM analytics_freshet.notes")
        .await
        .expect("lose rows");
    std::fs::remove_dir_all(s.dir.path().join("lake/public.docs")).expect("lose objects");
    let replay = |table: &str| {
        let (code, out) = support::freshet(&[
            "replay",
            "--pipeline",
            &pipeline.display().to_string(),
            "--table",
            table,
        ]);
        assert_eq!(code, Some(0), "freshet replay --table {table}:\n{out}");
        out
    };
    let out = replay("public.docs");
    assert!(out.contains("read again from offset 0"), "{out}");
    replay("public.notes");
    wait_equal(&s.client, &TABLES, Duration::from_secs(10)).await;
    let once = digests(&s).await;
    replay("public.docs");
    replay("public.notes");
    assert_eq!(
        digests(&s).await,
        once,
        "a second replay changed the warehouse"
    );
    wait_equal(&s.client, &TABLES, Duration::from_secs(10)).await;
}

/// The Redshift driver end to end: the lake in S3 (moto's server), the loads through the
/// Redshift Data API, which a stand-in speaks here (Redshift cannot run on this machine),
/// running the driver's Redshift SQL on PostgreSQL, its COPY reading the Parquet objects by
/// their manifests from S3. Serialization conflicts are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redshift_data_api_driver_loads_through_the_stand_in() {
    let s = Setup::warehouse("wh_redshift").await;
    let s3 = support::lake::MotoS3::start();
    s3.create_bucket("lake");
    let redshift = support::warehouse::RedshiftStandIn::start(&s.db.url, &s3, 2);
    let broker = Broker::start(Engine::Memory);
    let mut extra = format!(
        "{EAV}batcher:\n  store: s3://lake/cdc\n  s3:\n    endpoint: {}\n    path_style: true\n    \
         region: us-east-1\n  rotation:\n    max_rows: 400\n    max_age: 1s\n{}",
        s3.endpoint(),
        redshift.warehouse_yaml()
    );
    extra.push_str(&support::warehouse::freshness_yaml(&TABLES, "2s"));
    let pipeline = s.kafka_pipeline(&TABLES, &broker.brokers(), &extra, true);
    let (daemon, port) = s.start_listening(&pipeline, &s3.env());
    s.slot_ready(&daemon).await;
    run_workload(&s).await;
    delete_unseen_key(&s).await;
    wait_equal(&s.client, &TABLES, Duration::from_secs(120)).await;
    let log = daemon.log_text();
    assert!(
        log.contains("serialization conflict in Redshift; trying the transaction again"),
        "the conflicts were retried:\n{log}"
    );
    let metrics = support::scrape(port);
    assert!(
        support::events(&metrics, "loaded", "loader") >= 6.0,
        "{metrics}"
    );

    // Text longer than Redshift's VARCHAR(65535): cut to it and counted, the load goes on.
    s.client
        .batch_execute("INSERT INTO public.docs (id, body) VALUES ('long', repeat('x', 70000))")
        .await
        .expect("a long text");
    let length = support::wait_for("the long text loaded", Duration::from_secs(60), || async {
        s.client
            .query_opt(
                "SELECT octet_length(body) FROM analytics.docs WHERE id = 'long'",
                &[],
            )
            .await
            .expect("length")
            .map(|r| r.get::<_, i32>(0))
    })
    .await;
    assert_eq!(length, 65535);
    let metrics = support::scrape(port);
    assert_eq!(
        support::sample(
            &metrics,
            "freshet_loader_values_truncated_total{table=\"public.docs\",column=\"body\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    s.client
        .batch_execute("DELETE FROM public.docs WHERE id = 'long'")
        .await
        .expect("delete");
    wait_equal(&s.client, &TABLES, Duration::from_secs(60)).await;
}
