//! The warehouse benchmarks: `freshet bench warehouse` loads a lake (the one `freshet bench
//! lake` wrote) into an empty warehouse and times it; `freshet bench visible` measures, under
//! whatever load runs beside it, how long after its commit in PostgreSQL a change can be read
//! in the warehouse, by writing probe rows and watching for them there.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Pipeline;
use crate::loader;
use crate::pipeline::PipelineError;
use crate::store::Store;

pub struct LoadRun {
    pub summary: loader::Summary,
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
}

pub async fn load(p: &Pipeline, lake: &Path) -> Result<LoadRun, PipelineError> {
    let Some(settings) = loader::Settings::from_pipeline(p)? else {
        return Err(PipelineError::Config(
            "bench warehouse needs the pipeline's warehouse section".into(),
        ));
    };
    let store = Store::open(&format!("file://{}", lake.display()), &Default::default()).await?;
    let started = Instant::now();
    let summary = loader::load_all(p, &settings, &store).await?;
    Ok(LoadRun {
        summary,
        elapsed: started.elapsed(),
        peak_rss_kib: super::capture::peak_rss_kib(),
    })
}

/// Commit → visible latencies of probe rows, and how many never arrived.
pub struct Visible {
    pub latencies: Vec<Duration>,
    pub missing: usize,
}

/// Writes a row into `probe` (`schema.table` with columns `id bigint PRIMARY KEY, at
/// timestamptz`, captured by the pipeline) every `every` for `duration`, and watches the
/// warehouse's view of it: each row's latency is from its commit time (the source's clock;
/// the warehouse is read on the same machine) to the first poll that sees it.
pub async fn visible(
    p: &Pipeline,
    probe: &str,
    duration: Duration,
    every: Duration,
) -> Result<Visible, PipelineError> {
    let (Some(w), Some((schema, table))) = (&p.warehouse, probe.split_once('.')) else {
        return Err(PipelineError::Config(
            "bench visible needs a warehouse section and --probe schema.table".into(),
        ));
    };
    let Some(pg) = &w.postgres else {
        return Err(PipelineError::Config(
            "bench visible reads the PostgreSQL warehouse".into(),
        ));
    };
    let connect = |url: crate::pg::Dsn| async move {
        crate::pg::connect(&url)
            .await
            .map_err(|e| PipelineError::Config(e.to_string()))
    };
    let source = connect(p.source.url.to_config()).await?;
    let warehouse = connect(pg.url.to_config()).await?;
    let insert = format!(
        "INSERT INTO {}.{} (id, at) VALUES ($1, clock_timestamp())",
        crate::pg::quote_ident(schema),
        crate::pg::quote_ident(table)
    );
    let read = format!(
        "SELECT id, (extract(epoch FROM at) * 1000)::bigint FROM {}.{} WHERE id >= $1",
        crate::pg::quote_ident(&w.schema),
        crate::pg::quote_ident(table)
    );
    let sql_error = |e: tokio_postgres::Error| PipelineError::Config(crate::pg::describe(&e));
    let mut committed: std::collections::BTreeSet<i64> = Default::default();
    let mut seen: Vec<Duration> = Vec::new();
    let mut next_id = 1i64;
    let started = Instant::now();
    let mut next_write = Instant::now();
    // The probes keep coming for `duration`; then up to a minute for the last to arrive.
    while started.elapsed() < duration + Duration::from_secs(60) {
        if started.elapsed() < duration && Instant::now() >= next_write {
            source
                .execute(&insert, &[&next_id])
                .await
                .map_err(sql_error)?;
            committed.insert(next_id);
            next_id += 1;
            next_write += every;
        } else if started.elapsed() >= duration && committed.is_empty() {
            break;
        }
        // Probes land on several partitions, so in any order: read from the oldest unseen.
        let from = committed.first().copied().unwrap_or(next_id);
        // The view does not exist before the first load.
        let rows = warehouse.query(&read, &[&from]).await.unwrap_or_default();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for r in rows {
            let (id, at_ms): (i64, i64) = (r.get(0), r.get(1));
            if committed.remove(&id) {
                seen.push(Duration::from_millis(
                    u64::try_from(now_ms.saturating_sub(at_ms)).unwrap_or(0),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.sort();
    Ok(Visible {
        latencies: seen,
        missing: committed.len(),
    })
}
