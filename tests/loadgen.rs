//! `freshet loadgen` against a real PostgreSQL: exact counts, type mix, determinism, and a
//! steady run whose reported rows are the rows the server changed.

mod support;

use std::time::Duration;

use freshet::loadgen::{self, data, FillOptions, RunOptions};
use support::TestDb;

fn shape(seed: u64, jobs: u32) -> FillOptions {
    FillOptions {
        tenants: 3,
        entities_per_tenant: 200,
        attributes_per_entity: 12,
        catalog_size: 300,
        seed,
        jobs,
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A digest of every row, for comparing two fills.
async fn digest(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
               SELECT format('%s,%s,%s,%s,%s,%s,%s,%s', tenant_id, entity_id, attribute_id, string_value,
                             integer_value, float_value, boolean_value, timestamp_value) AS x
               FROM atlasco.entity_values
               UNION ALL SELECT format('e%s,%s,%s', tenant_id, entity_id, entity_type) FROM atlasco.entities
               UNION ALL SELECT format('a%s,%s,%s', attribute_id, name, data_type) FROM atlasco.attributes) rows",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn fill_writes_exactly_the_requested_counts_and_type_mix() {
    let db = TestDb::new("loadgen_fill").await;
    let report = loadgen::fill(&db.config(), &shape(11, 2))
        .await
        .expect("fill");
    let client = db.client().await;

    assert_eq!(
        (report.tenants, report.entities, report.values),
        (3, 600, 7200)
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM atlasco.tenants").await,
        3
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM atlasco.attributes").await,
        300
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM atlasco.entities").await,
        600
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM atlasco.entity_values").await,
        7200
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM (SELECT 1 FROM atlasco.entity_values GROUP BY tenant_id, entity_id HAVING count(*) = 12) e").await,
        600,
        "every entity has exactly 12 values"
    );

    // The mix in the database is the mix the report claims, type by type, and every value
    // sits in the column of its attribute's type.
    for t in data::ValueType::ALL {
        let column = format!("{}_value", t.sql_name());
        let sql = format!(
            "SELECT count(*) FROM atlasco.entity_values v JOIN atlasco.attributes a USING (attribute_id)
             WHERE a.data_type = '{}' AND v.{column} IS NOT NULL",
            t.sql_name()
        );
        assert_eq!(
            count(&client, &sql).await as u64,
            report.values_by_type[t.index()],
            "{}",
            t.sql_name()
        );
        // Every entity has one of each named attribute; the other 7 follow the catalog weights.
        let expected = (1.0 + 7.0 * t.weight_percent() as f64 / 100.0) / 12.0;
        let share = report.values_by_type[t.index()] as f64 / 7200.0;
        assert!(
            (share - expected).abs() < 0.05,
            "{}: {share:.3} vs {expected:.3}",
            t.sql_name()
        );
    }
    let named = count(&client, "SELECT count(*) FROM atlasco.entity_values v JOIN atlasco.attributes a USING (attribute_id) WHERE a.name = 'temperature'").await;
    assert_eq!(named, 600);

    let again = loadgen::fill(&db.config(), &shape(11, 2))
        .await
        .expect_err("a second fill is refused");
    assert!(again.to_string().contains("already holds rows"), "{again}");
}

#[tokio::test]
async fn fill_is_deterministic_for_a_seed_whatever_the_parallelism() {
    let (a, b, c) = (
        TestDb::new("loadgen_det_a").await,
        TestDb::new("loadgen_det_b").await,
        TestDb::new("loadgen_det_c").await,
    );
    loadgen::fill(&a.config(), &shape(5, 1)).await.unwrap();
    loadgen::fill(&b.config(), &shape(5, 3)).await.unwrap();
    loadgen::fill(&c.config(), &shape(6, 1)).await.unwrap();
    let (da, db_, dc) = (
        digest(&a.client().await).await,
        digest(&b.client().await).await,
        digest(&c.client().await).await,
    );
    assert_eq!(da, db_, "same seed, different job counts: same rows");
    assert_ne!(da, dc, "another seed gives other rows");
}

#[tokio::test]
async fn run_reports_the_rows_the_server_changed() {
    let db = TestDb::new("loadgen_run").await;
    loadgen::fill(&db.config(), &shape(3, 2)).await.unwrap();
    let client = db.client().await;
    let entities_before = count(&client, "SELECT count(*) FROM atlasco.entities").await;
    let history_before = count(&client, "SELECT count(*) FROM atlasco.entity_value_history").await;

    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let opts = RunOptions {
        rate: 400,
        duration: Some(Duration::from_secs(3)),
        connections: 3,
        seed: 9,
    };
    let report = loadgen::run(&db.config(), &opts, stopped)
        .await
        .expect("run");
    assert!(report.transactions > 0 && report.rows > 0, "{report}");

    // Every value change leaves one history row (the triggers), every new entity one entity row:
    // together they are exactly the rows the run says it changed.
    let new_entities =
        count(&client, "SELECT count(*) FROM atlasco.entities").await - entities_before;
    let history =
        count(&client, "SELECT count(*) FROM atlasco.entity_value_history").await - history_before;
    assert_eq!((history + new_entities) as u64, report.rows, "{report}");
    let ops = count(&client, "SELECT count(DISTINCT op) FROM atlasco.entity_value_history WHERE changed_at > now() - interval '1 minute'").await;
    assert_eq!(ops, 3, "inserts, updates and deletes all happened");
    let large = count(
        &client,
        "SELECT count(*) FROM atlasco.entity_values WHERE length(string_value) >= 4096",
    )
    .await;
    assert_eq!(
        large as u64 > 0,
        report.statements[freshet::loadgen::Op::LargeValue as usize] > 0
    );
}
