//! The embedded warehouse as the tests see it: the loader's views in schema `analytics` of
//! the test's own database, so that the source and the warehouse are compared by SQL, with
//! `EXCEPT ALL` both ways (duplicate rows count).

use tokio_postgres::Client;

pub const SCHEMA: &str = "analytics";

/// The pipeline file's sections for a PostgreSQL warehouse at `url` and freshness budgets
/// of `budget` for `tables` (loads every half budget).
pub fn warehouse_yaml(url: &str, tables: &[&str], budget: &str) -> String {
    format!(
        "warehouse:\n  driver: postgres\n  schema: {SCHEMA}\n  postgres:\n    url: {url}\n{}",
        freshness_yaml(tables, budget)
    )
}

/// A freshness class `test` of `budget` for every one of `tables`.
pub fn freshness_yaml(tables: &[&str], budget: &str) -> String {
    let mut yaml = format!("freshness_classes:\n  test: {budget}\ntables:\n");
    for t in tables {
        yaml.push_str(&format!("  {t}: {{ freshness: test }}\n"));
    }
    yaml
}

/// What differs between `source` (`schema.table`) and its warehouse view: rows the source
/// has more of, and rows the view has more of, as JSON texts (at most 20 of each).
pub async fn difference(client: &Client, source: &str) -> (Vec<String>, Vec<String>) {
    let (schema, table) = source.split_once('.').expect("schema.table");
    let columns = client
        .query(
            "SELECT s.attname::text, format_type(s.atttypid, s.atttypmod), \
                    format_type(v.atttypid, v.atttypmod) \
             FROM pg_attribute s \
             LEFT JOIN pg_attribute v ON v.attrelid = to_regclass($3) AND v.attname = s.attname \
             WHERE s.attrelid = to_regclass($1 || '.' || $2) AND s.attnum > 0 \
               AND NOT s.attisdropped ORDER BY s.attnum",
            &[&schema, &table, &format!("{SCHEMA}.{}", quote(table))],
        )
        .await
        .expect("columns of the source and the view");
    assert!(!columns.is_empty(), "{SCHEMA}.{table} has no view yet");
    // Every column of the source is in the view, and compared.
    if let Some(missing) = columns
        .iter()
        .find(|r| r.get::<_, Option<String>>(2).is_none())
    {
        let name: String = missing.get(0);
        return (vec![format!("the view has no column {name}")], Vec::new());
    }
    // The warehouse's types where they differ from the source's (enums as text, json as
    // jsonb): the source's values are cast to them.
    let source_list: Vec<String> = columns
        .iter()
        .map(|r| {
            let (name, have, want): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            if have == want {
                quote(&name)
            } else {
                format!("CAST({} AS {want}) AS {}", quote(&name), quote(&name))
            }
        })
        .collect();
    let view_list: Vec<String> = columns
        .iter()
        .map(|r| quote(&r.get::<_, String>(0)))
        .collect();
    let from_source = format!(
        "SELECT {} FROM {}.{}",
        source_list.join(", "),
        quote(schema),
        quote(table)
    );
    let from_view = format!(
        "SELECT {} FROM {SCHEMA}.{}",
        view_list.join(", "),
        quote(table)
    );
    let rows = |a: &str, b: &str| {
        format!("SELECT left(row_to_json(d)::text, 300) FROM ({a} EXCEPT ALL {b}) d LIMIT 20")
    };
    let texts = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect();
    let only_source = client
        .query(&rows(&from_source, &from_view), &[])
        .await
        .expect("source EXCEPT ALL warehouse");
    let only_view = client
        .query(&rows(&from_view, &from_source), &[])
        .await
        .expect("warehouse EXCEPT ALL source");
    (texts(only_source), texts(only_view))
}

/// Whether the view exists yet.
pub async fn has_view(client: &Client, table: &str) -> bool {
    client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{SCHEMA}.{}", quote(table))],
        )
        .await
        .expect("view lookup")
        .get(0)
}

/// Waits until every table's view equals its source; panics with the differences.
pub async fn wait_equal(client: &Client, tables: &[&str], timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut differences = Vec::new();
        for t in tables {
            let name = t.split_once('.').expect("schema.table").1;
            if !has_view(client, name).await {
                // A table appears in the warehouse with its first change.
                let rows: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                    .await
                    .expect("source rows")
                    .get(0);
                if rows > 0 {
                    differences.push(format!("{t}: no view yet"));
                }
                continue;
            }
            let (only_source, only_view) = difference(client, t).await;
            if !only_source.is_empty() || !only_view.is_empty() {
                differences.push(format!(
                    "{t}: only in the source {only_source:?}, only in the warehouse {only_view:?}"
                ));
            }
        }
        if differences.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "the warehouse did not equal the source within {timeout:?}:\n{}",
                differences.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// A digest of everything the warehouse holds for `table`, tombstones and Freshet's own
/// columns included: equal digests, nothing changed.
pub async fn digest(client: &Client, table: &str) -> String {
    client
        .query_one(
            &format!(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) \
                 FROM {SCHEMA}_freshet.{} t",
                quote(table)
            ),
            &[],
        )
        .await
        .expect("digest")
        .get(0)
}

/// Ledger rows of `source`.
pub async fn ledger_rows(client: &Client, source: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM {SCHEMA}_freshet._freshet_ledger WHERE table_name = $1"),
            &[&source],
        )
        .await
        .expect("ledger")
        .get(0)
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The Redshift Data API stand-in (`tests/warehouse/redshift_data.py`): Redshift cannot run
/// here, so its statements run on the test's PostgreSQL; killed when dropped.
pub struct RedshiftStandIn {
    child: std::process::Child,
    pub port: u16,
}

impl RedshiftStandIn {
    /// `conflicts`: how many writing batches fail first with Redshift's serialization error.
    pub fn start(pg_url: &str, s3: &super::lake::MotoS3, conflicts: u32) -> RedshiftStandIn {
        use std::io::BufRead as _;
        let port = super::kafka::free_port();
        let mut child = std::process::Command::new(super::lake::python())
            .arg(super::repo().join("tests/warehouse/redshift_data.py"))
            .args([
                &port.to_string(),
                pg_url,
                &s3.endpoint(),
                &conflicts.to_string(),
            ])
            .envs(s3.env())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the Redshift Data API stand-in");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the stand-in's first line");
        assert_eq!(
            line.trim(),
            "ready",
            "the Redshift Data API stand-in did not start"
        );
        RedshiftStandIn { child, port }
    }

    /// The pipeline's warehouse section for this stand-in.
    pub fn warehouse_yaml(&self) -> String {
        format!(
            "warehouse:\n  driver: redshift_data\n  schema: {SCHEMA}\n  redshift_data:\n    \
             cluster_identifier: freshet-test\n    database: dev\n    db_user: freshet\n    \
             copy_iam_role: arn:aws:iam::123456789012:role/freshet-copy\n    region: us-east-1\n    \
             endpoint: http://127.0.0.1:{}\n",
            self.port
        )
    }
}

impl Drop for RedshiftStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
