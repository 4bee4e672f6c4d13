//! The schema benchmark: fill at scale, then the example queries' latency and plans.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::pg::Dsn;

use crate::loadgen::{self, Context, FillOptions, LoadgenError};
use crate::pg;

/// One `-- name:` query of the queries file.
#[derive(Debug, PartialEq, Eq)]
pub struct NamedQuery {
    pub name: String,
    pub sql: String,
}

/// Splits a queries file on `-- name: NAME` lines; comments stay out of the SQL.
pub fn parse_queries(text: &str) -> Vec<NamedQuery> {
    let mut queries: Vec<NamedQuery> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("-- name:") {
            queries.push(NamedQuery {
                name: name.trim().to_string(),
                sql: String::new(),
            });
        } else if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        } else if let Some(q) = queries.last_mut() {
            q.sql.push_str(line);
            q.sql.push('\n');
        }
    }
    for q in &mut queries {
        q.sql = q.sql.trim().trim_end_matches(';').to_string();
    }
    queries.retain(|q| !q.sql.is_empty());
    queries
}

pub struct QueryFigures {
    pub name: String,
    pub rows: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
    pub plan: String,
}

pub async fn run(
    config: &Dsn,
    fill: &FillOptions,
    queries_file: &Path,
    runs: u32,
) -> Result<Vec<QueryFigures>, LoadgenError> {
    let text = std::fs::read_to_string(queries_file).map_err(|e| {
        LoadgenError::Invalid(format!("cannot read {}: {e}", queries_file.display()))
    })?;
    let queries = parse_queries(&text);
    if queries.is_empty() {
        return Err(LoadgenError::Invalid(format!(
            "{} holds no `-- name:` query",
            queries_file.display()
        )));
    }
    let client = pg::connect(config).await?;
    let filled: bool = client
        .query_one(
            "SELECT to_regclass('atlasco.entity_values') IS NOT NULL",
            &[],
        )
        .await
        .context("looking for the schema")?
        .get(0);
    let has_rows = filled
        && client
            .query_one("SELECT EXISTS (SELECT 1 FROM atlasco.entity_values)", &[])
            .await
            .context("looking for rows")?
            .get::<_, bool>(0);
    if has_rows {
        println!("bench schema: using the rows already loaded");
    } else {
        let report = loadgen::fill(config, fill).await?;
        println!("bench schema: {report}");
    }

    let started = Instant::now();
    client
        .batch_execute(
            "VACUUM (ANALYZE) atlasco.entities, atlasco.entity_values, atlasco.attributes",
        )
        .await
        .context("VACUUM ANALYZE")?;
    println!(
        "bench schema: VACUUM ANALYZE took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    client
        .batch_execute("SELECT atlasco.refresh_entity_attributes()")
        .await
        .context("refreshing the view")?;
    client
        .batch_execute("ANALYZE atlasco.entity_attributes_mv")
        .await
        .context("ANALYZE the view")?;
    println!(
        "bench schema: materialized view refresh took {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let sizes = client
        .query(
            "SELECT c.relname, (SELECT sum(reltuples)::bigint FROM pg_class p \
                                JOIN pg_inherits i ON i.inhrelid = p.oid WHERE i.inhparent = c.oid), \
                    pg_size_pretty((SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i \
                                    WHERE i.inhparent = c.oid)) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'atlasco' AND c.relname IN ('entities', 'entity_values')",
            &[],
        )
        .await
        .context("reading table sizes")?;
    for r in sizes {
        let (name, rows, size): (String, Option<i64>, Option<String>) =
            (r.get(0), r.get(1), r.get(2));
        println!(
            "bench schema: {name}: ~{} rows, {} with indexes",
            rows.unwrap_or(0),
            size.unwrap_or_default()
        );
    }

    let mut figures = Vec::new();
    for q in &queries {
        let plan_rows = client
            .query(
                &format!(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {}",
                    q.sql
                ),
                &[],
            )
            .await
            .context(format!("EXPLAIN {}", q.name))?;
        let plan: Vec<String> = plan_rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let statement = client
            .prepare(&q.sql)
            .await
            .context(format!("preparing {}", q.name))?;
        let mut rows = 0;
        for _ in 0..2 {
            rows = client
                .query(&statement, &[])
                .await
                .context(format!("running {}", q.name))?
                .len();
        }
        let mut samples = Vec::with_capacity(runs as usize);
        for _ in 0..runs {
            let t = Instant::now();
            client
                .query(&statement, &[])
                .await
                .context(format!("running {}", q.name))?;
            samples.push(t.elapsed());
        }
        samples.sort_unstable();
        figures.push(QueryFigures {
            name: q.name.clone(),
            rows,
            p50: super::percentile(&samples, 50.0),
            p95: super::percentile(&samples, 95.0),
            max: samples.last().copied().unwrap_or_default(),
            plan: plan.join("\n"),
        });
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_split_on_name_lines_without_comments() {
        let text = "-- header\n\n-- name: a\n-- why\nSELECT 1\n  FROM t;\n\n-- name: b\nSELECT 2;\n-- name: empty\n";
        let q = parse_queries(text);
        assert_eq!(q.len(), 2);
        assert_eq!(
            (q[0].name.as_str(), q[0].sql.as_str()),
            ("a", "SELECT 1\n  FROM t")
        );
        assert_eq!((q[1].name.as_str(), q[1].sql.as_str()), ("b", "SELECT 2"));
    }

    #[test]
    fn shipped_queries_file_has_the_seed_queries() {
        let text = include_str!("../../schema/queries.sql");
        let names: Vec<String> = parse_queries(text).into_iter().map(|q| q.name).collect();
        assert_eq!(
            names,
            [
                "operational_filter",
                "temperature_distribution",
                "jsonb_entity",
                "jsonb_filter"
            ]
        );
    }
}
