//! schema/schema.sql on a real PostgreSQL 15.

mod support;

use std::time::Duration;

use support::TestDb;
use tokio_postgres::error::SqlState;

async fn loaded(prefix: &str) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::new(prefix).await;
    let client = db.client().await;
    client
        .batch_execute(&support::schema_sql())
        .await
        .expect("schema loads");
    (db, client)
}

#[tokio::test]
async fn loads_twice_with_sixteen_hash_partitions_per_table() {
    let (_db, client) = loaded("schema_twice").await;
    client
        .batch_execute(&support::schema_sql())
        .await
        .expect("schema loads a second time");

    for parent in ["entities", "entity_values"] {
        let rows = client
            .query(
                "SELECT pt.partstrat::text, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_partitioned_table pt ON pt.partrelid = i.inhparent
                 WHERE i.inhparent = $1::text::regclass",
                &[&format!("atlasco.{parent}")],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 16, "{parent} partitions");
        let mut remainders: Vec<u32> = rows
            .iter()
            .map(|r| {
                assert_eq!(r.get::<_, String>(0), "h", "{parent} is hash-partitioned");
                let bound: String = r.get(1);
                assert!(bound.contains("modulus 16"), "{bound}");
                bound
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .trim_end_matches(')')
                    .parse()
                    .unwrap()
            })
            .collect();
        remainders.sort_unstable();
        assert_eq!(
            remainders,
            (0..16).collect::<Vec<_>>(),
            "{parent} covers every remainder"
        );
    }

    // Tenants spread over partitions: 64 tenants must land in most of the 16.
    client
        .batch_execute(
            "INSERT INTO atlasco.tenants SELECT g, 't' || g FROM generate_series(1, 64) g;
             INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type)
             SELECT g, g, 'sensor' FROM generate_series(1, 64) g;",
        )
        .await
        .unwrap();
    let used: i64 = client
        .query_one("SELECT count(DISTINCT tableoid) FROM atlasco.entities", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        used >= 12,
        "64 tenants fell into only {used} of 16 partitions"
    );
}

#[tokio::test]
async fn exactly_one_typed_value_per_row() {
    let (_db, client) = loaded("schema_check").await;
    client
        .batch_execute(
            "INSERT INTO atlasco.tenants VALUES (1, 'a');
             INSERT INTO atlasco.attributes (attribute_id, name, data_type) VALUES (1, 'status', 'string');",
        )
        .await
        .unwrap();
    let insert = "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, integer_value)
                  VALUES (1, 1, 1, $1, $2)";
    for (s, i) in [(Some("x"), Some(1i64)), (None, None)] {
        let err = client
            .execute(insert, &[&s, &i])
            .await
            .expect_err("violates the CHECK");
        assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err:?}");
        let constraint = err
            .as_db_error()
            .and_then(|e| e.constraint())
            .unwrap_or_default();
        assert_eq!(constraint, "entity_values_exactly_one_value");
    }
    assert_eq!(
        client
            .execute(insert, &[&Some("x"), &None::<i64>])
            .await
            .unwrap(),
        1
    );
    // A TOASTable value is accepted and indexed by its prefix.
    let big = "y".repeat(20_000);
    client
        .execute(
            "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value) VALUES (1, 2, 1, $1)",
            &[&big],
        )
        .await
        .expect("a 20 kB string fits the prefix index");
    // The history trigger recorded both inserts.
    let history: i64 = client
        .query_one(
            "SELECT count(*) FROM atlasco.entity_value_history WHERE op = 'c'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 2);
}

#[tokio::test]
async fn matview_refreshes_concurrently_while_rows_change() {
    let (db, client) = loaded("schema_mv").await;
    client
        .batch_execute(
            "INSERT INTO atlasco.tenants VALUES (1, 'a');
             INSERT INTO atlasco.attributes (attribute_id, name, data_type) VALUES
               (1, 'status', 'string'), (2, 'temperature', 'float');
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, float_value)
             SELECT 1, g, 1, 'active', NULL FROM generate_series(1, 500) g
             UNION ALL SELECT 1, g, 2, NULL, g / 10.0 FROM generate_series(1, 500) g;
             SELECT atlasco.refresh_entity_attributes();",
        )
        .await
        .unwrap();
    let doc: serde_json::Value = client
        .query_one(
            "SELECT attrs FROM atlasco.entity_attributes_mv WHERE tenant_id = 1 AND entity_id = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        doc,
        serde_json::json!({"status": "active", "temperature": 0.7})
    );

    // The refresh holds its lock until commit: while it does, another session reads the view
    // and writes the base table without waiting.
    client
        .batch_execute("BEGIN; SELECT atlasco.refresh_entity_attributes();")
        .await
        .unwrap();
    let other = db.client().await;
    let concurrent = async {
        let read: i64 = other
            .query_one("SELECT count(*) FROM atlasco.entity_attributes_mv", &[])
            .await
            .unwrap()
            .get(0);
        other
            .execute(
                "UPDATE atlasco.entity_values SET string_value = 'inactive' WHERE tenant_id = 1 AND entity_id = 7
                 AND attribute_id = 1",
                &[],
            )
            .await
            .unwrap();
        read
    };
    let read = tokio::time::timeout(Duration::from_secs(10), concurrent)
        .await
        .expect("reads and writes proceed during REFRESH … CONCURRENTLY");
    assert_eq!(read, 500);
    client.batch_execute("COMMIT").await.unwrap();

    let before: String = client
        .query_one(
            "SELECT attrs->>'status' FROM atlasco.entity_attributes_mv WHERE entity_id = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, "active", "the view shows the refresh's snapshot");
    client
        .batch_execute("SELECT atlasco.refresh_entity_attributes()")
        .await
        .unwrap();
    let after: String = client
        .query_one(
            "SELECT attrs->>'status' FROM atlasco.entity_attributes_mv WHERE entity_id = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        after, "inactive",
        "the next refresh picks up the concurrent write"
    );
}

/// Partitions of the history table and their tiers: (schema, name, tier comment, attached,
/// has the hot btree index).
async fn history_partitions(
    client: &tokio_postgres::Client,
) -> Vec<(String, String, String, bool, bool)> {
    client
        .query(
            "SELECT n.nspname, c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''),
                    EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid),
                    EXISTS (SELECT 1 FROM pg_indexes x WHERE x.schemaname = n.nspname
                            AND x.tablename = c.relname AND x.indexname LIKE '%_entity_idx')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relname ~ '^entity_value_history_2026(01|02|03)'
             ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

async fn maintain(
    client: &tokio_postgres::Client,
    now: &str,
    retention: Option<&str>,
) -> Vec<(String, String)> {
    client
        .query(
            "SELECT partition_name, action FROM atlasco.maintain_history_partitions($1::text::timestamptz, 3, $2::text::interval)",
            &[&now, &retention],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn actions(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(p, a)| (format!("entity_value_history_{p}"), a.to_string()))
        .collect()
}

#[tokio::test]
async fn maintenance_creates_tiers_and_retires_partitions_for_a_given_now() {
    let (_db, client) = loaded("schema_tiers").await;

    let done = maintain(&client, "2026-01-10 12:00+00", None).await;
    assert_eq!(
        done,
        actions(&[
            ("20260110", "created"),
            ("20260111", "created"),
            ("20260112", "created"),
            ("20260113", "created")
        ])
    );
    assert!(
        maintain(&client, "2026-01-10 13:00+00", None)
            .await
            .is_empty(),
        "a second run is a no-op"
    );
    let parts = history_partitions(&client).await;
    assert!(
        parts
            .iter()
            .all(|p| p.0 == "atlasco" && p.2 == "tier=hot" && p.3 && p.4),
        "{parts:?}"
    );

    // Ten days on: the four are 7–10 days old, warm; four new ones are hot.
    let done = maintain(&client, "2026-01-20 00:30+00", None).await;
    let mut expected = actions(&[
        ("20260120", "created"),
        ("20260121", "created"),
        ("20260122", "created"),
        ("20260123", "created"),
    ]);
    expected.extend(actions(&[
        ("20260110", "warm"),
        ("20260111", "warm"),
        ("20260112", "warm"),
        ("20260113", "warm"),
    ]));
    assert_eq!(done, expected);
    for p in history_partitions(&client).await {
        let warm = p.1.as_str() <= "entity_value_history_20260113";
        assert_eq!(p.2, if warm { "tier=warm" } else { "tier=hot" }, "{p:?}");
        assert_eq!(p.4, !warm, "the btree exists only while hot: {p:?}");
        assert!(p.3, "warm partitions stay attached: {p:?}");
    }

    // A row that arrives for a day with no partition lands in the default partition, and the
    // run that creates that day's partition moves it in.
    client
        .batch_execute(
            "INSERT INTO atlasco.entity_value_history (tenant_id, entity_id, attribute_id, op, integer_value, changed_at)
             VALUES (1, 1, 1, 'c', 5, '2026-02-15 08:00+00')",
        )
        .await
        .unwrap();
    let done = maintain(&client, "2026-02-15 09:00+00", None).await;
    assert!(
        done.contains(&("entity_value_history_20260215".into(), "created".into())),
        "{done:?}"
    );
    for day in ["20260110", "20260111", "20260112", "20260113"] {
        assert!(
            done.contains(&(format!("entity_value_history_{day}"), "cold".into())),
            "{done:?}"
        );
    }
    let moved: i64 = client
        .query_one(
            "SELECT count(*) FROM atlasco.entity_value_history_20260215 WHERE integer_value = 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM atlasco.entity_value_history_default",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((moved, left), (1, 0));
    for p in history_partitions(&client).await {
        if p.1.as_str() <= "entity_value_history_20260113" {
            assert_eq!(
                (p.0.as_str(), p.2.as_str(), p.3),
                ("atlasco_cold", "tier=cold", false),
                "{p:?}"
            );
        } else if p.1.as_str() <= "entity_value_history_20260123" {
            assert_eq!(
                (p.0.as_str(), p.2.as_str(), p.3),
                ("atlasco", "tier=warm", true),
                "{p:?}"
            );
        }
    }

    // With a 40-day retention on 2026-02-25, every day up to 2026-01-15 is dropped.
    let done = maintain(&client, "2026-02-25 00:00+00", Some("40 days")).await;
    let dropped: Vec<&str> = done
        .iter()
        .filter(|(_, a)| a == "dropped")
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(
        dropped,
        [
            "entity_value_history_20260110",
            "entity_value_history_20260111",
            "entity_value_history_20260112",
            "entity_value_history_20260113"
        ]
    );
    let names: Vec<String> = history_partitions(&client)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.as_str() <= "entity_value_history_20260113"),
        "{names:?}"
    );
    assert!(names.contains(&"entity_value_history_20260120".to_string()));
}

#[tokio::test]
async fn publication_publishes_the_four_tables_through_their_roots() {
    let (_db, client) = loaded("schema_pub").await;
    let row = client
        .query_one(
            "SELECT pubviaroot, puballtables FROM pg_publication WHERE pubname = 'freshet_atlasco'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );
    let tables: Vec<String> = client
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'freshet_atlasco' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "atlasco.attributes",
            "atlasco.entities",
            "atlasco.entity_values",
            "atlasco.tenants"
        ]
    );
    let identities: Vec<(String, i8)> = client
        .query(
            "SELECT relname::text, relreplident::\"char\" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'atlasco' AND relname IN ('tenants', 'attributes', 'entity_values_p03') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        identities,
        [
            ("attributes".to_string(), b'f' as i8),
            ("entity_values_p03".to_string(), b'd' as i8),
            ("tenants".to_string(), b'f' as i8)
        ]
    );
}
