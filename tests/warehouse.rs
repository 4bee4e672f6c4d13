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
        s.client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                s.slot,
                TABLES.join(", ")
            ))
            .await
            .expect("publication");
        s
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

/// A delete of a key the warehouse never had: its insert was not published.
async fn delete_unseen_key(s: &Setup) {
    let publication = &s.slot;
    for step in [
        format!("ALTER PUBLICATION {publication} DROP TABLE public.docs"),
        "INSERT INTO public.docs (id, body) VALUES ('unseen', 'x')".into(),
        format!("ALTER PUBLICATION {publication} ADD TABLE public.docs"),
        "DELETE FROM public.docs WHERE id = 'unseen'".into(),
    ] {
        s.client.batch_execute(&step).await.expect(&step);
    }
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
    assert_eq!(bodies.len(), 5, "every TOASTed body, whole");
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
    s.client
        .batch_execute("DELETE FROM analytics_freshet._freshet_ledger")
        .await
        .expect("forget the ledger");
    let daemon = sink_only(&s, &pipeline);
    support::wait_for(
        "the objects loaded again",
        Duration::from_secs(60),
        || async {
            (ledger_rows(&s.client, "atlasco.entities").await > 0
                && ledger_rows(&s.client, "public.notes").await > 0)
                .then_some(())
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
