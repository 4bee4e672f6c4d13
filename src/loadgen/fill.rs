//! Bulk load through COPY, several connections in parallel, each owning whole tenants.

use std::time::{Duration, Instant};

use crate::pg::Dsn;
use bytes::Bytes;
use futures_util::SinkExt;
use rand::Rng;
use tokio_postgres::Client;
use tracing::info;

use super::data::{self, Attribute, ValueType, ENTITY_TYPES};
use super::{Context, LoadgenError, SCHEMA_SQL};
use crate::pg;

/// COPY payloads are sent in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct FillOptions {
    pub tenants: u32,
    pub entities_per_tenant: u32,
    pub attributes_per_entity: u32,
    /// Catalog size; at least `attributes_per_entity`.
    pub catalog_size: u32,
    pub seed: u64,
    /// Parallel COPY connections.
    pub jobs: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FillReport {
    pub tenants: u64,
    pub entities: u64,
    pub values: u64,
    /// Value rows per type, indexed by [`ValueType::index`].
    pub values_by_type: [u64; 5],
    pub elapsed: Duration,
}

impl FillReport {
    pub fn rows_per_sec(&self) -> f64 {
        (self.entities + self.values) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for FillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "filled {} tenants, {} entities, {} values in {:.1}s: {:.0} rows/s; values by type:",
            self.tenants,
            self.entities,
            self.values,
            self.elapsed.as_secs_f64(),
            self.rows_per_sec()
        )?;
        for t in ValueType::ALL {
            let n = self.values_by_type[t.index()];
            let share = 100.0 * n as f64 / self.values.max(1) as f64;
            write!(f, " {}={n} ({share:.1}%)", t.sql_name())?;
        }
        Ok(())
    }
}

pub async fn fill(config: &Dsn, opts: &FillOptions) -> Result<FillReport, LoadgenError> {
    if opts.tenants == 0 || opts.entities_per_tenant == 0 || opts.jobs == 0 {
        return Err(LoadgenError::Invalid(
            "tenants, entities and jobs must be at least 1".into(),
        ));
    }
    if opts.catalog_size < opts.attributes_per_entity
        || opts.catalog_size < data::NAMED.len() as u32
    {
        return Err(LoadgenError::Invalid(format!(
            "the catalog ({}) must hold at least the attributes per entity ({}) and the {} named ones",
            opts.catalog_size,
            opts.attributes_per_entity,
            data::NAMED.len()
        )));
    }
    let started = Instant::now();
    let client = pg::connect(config).await?;
    client
        .batch_execute(SCHEMA_SQL)
        .await
        .context("applying schema/schema.sql")?;
    for table in [
        "atlasco.tenants",
        "atlasco.attributes",
        "atlasco.entities",
        "atlasco.entity_values",
    ] {
        let row = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .context(format!("checking {table}"))?;
        if row.get::<_, bool>(0) {
            return Err(LoadgenError::NotEmpty(table));
        }
    }

    let catalog = data::catalog(opts.seed, opts.catalog_size);
    let mut buf = String::new();
    for t in 1..=opts.tenants {
        buf.push_str(&format!("{t}\ttenant-{t:04}\n"));
    }
    copy(
        &client,
        "COPY atlasco.tenants (tenant_id, name) FROM STDIN",
        buf,
    )
    .await?;
    let mut buf = String::new();
    for a in &catalog {
        buf.push_str(&format!(
            "{}\t{}\t{}\n",
            a.id,
            a.name,
            a.value_type.sql_name()
        ));
    }
    copy(
        &client,
        "COPY atlasco.attributes (attribute_id, name, data_type) FROM STDIN",
        buf,
    )
    .await?;
    info!(
        tenants = opts.tenants,
        attributes = catalog.len(),
        "catalog loaded"
    );

    let mut jobs = Vec::new();
    for job in 0..opts.jobs {
        let tenants: Vec<u32> = (1..=opts.tenants)
            .filter(|t| (t - 1) % opts.jobs == job)
            .collect();
        let (config, opts, catalog) = (config.clone(), opts.clone(), catalog.clone());
        jobs.push(tokio::spawn(async move {
            fill_tenants(&config, &opts, &catalog, &tenants).await
        }));
    }
    let mut report = FillReport {
        tenants: opts.tenants as u64,
        ..FillReport::default()
    };
    for job in jobs {
        let part = job
            .await
            .map_err(|e| LoadgenError::Invalid(format!("fill task failed: {e}")))??;
        report.entities += part.entities;
        report.values += part.values;
        for (total, n) in report.values_by_type.iter_mut().zip(part.values_by_type) {
            *total += n;
        }
    }
    client
        .batch_execute(
            "ANALYZE atlasco.tenants, atlasco.attributes, atlasco.entities, atlasco.entity_values",
        )
        .await
        .context("analyzing the filled tables")?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// First entity id of a tenant: ids are global, so one id names one entity in every table.
pub(super) fn first_entity_id(tenant: u32, entities_per_tenant: u32) -> i64 {
    (tenant as i64 - 1) * entities_per_tenant as i64 + 1
}

async fn fill_tenants(
    config: &Dsn,
    opts: &FillOptions,
    catalog: &[Attribute],
    tenants: &[u32],
) -> Result<FillReport, LoadgenError> {
    let client = pg::connect(config).await?;
    let mut report = FillReport::default();
    let ids = |t: u32| {
        let first = first_entity_id(t, opts.entities_per_tenant);
        first..first + opts.entities_per_tenant as i64
    };

    let sink = client
        .copy_in("COPY atlasco.entities (tenant_id, entity_id, entity_type) FROM STDIN")
        .await
        .context("starting COPY into atlasco.entities")?;
    let mut sink = Box::pin(sink);
    let mut buf = String::with_capacity(CHUNK_BYTES + 4096);
    for &t in tenants {
        for id in ids(t) {
            let mut rng = data::entity_rng(opts.seed, id);
            let kind = ENTITY_TYPES[rng.random_range(0..ENTITY_TYPES.len())];
            buf.push_str(&format!("{t}\t{id}\t{kind}\n"));
            if buf.len() >= CHUNK_BYTES {
                send(&mut sink, &mut buf, "atlasco.entities").await?;
            }
        }
    }
    send(&mut sink, &mut buf, "atlasco.entities").await?;
    report.entities = sink
        .as_mut()
        .finish()
        .await
        .context("finishing COPY into atlasco.entities")?;

    let sink = client
        .copy_in(
            "COPY atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, \
             integer_value, float_value, boolean_value, timestamp_value) FROM STDIN",
        )
        .await
        .context("starting COPY into atlasco.entity_values")?;
    let mut sink = Box::pin(sink);
    for &t in tenants {
        for id in ids(t) {
            let mut rng = data::entity_rng(opts.seed, id);
            let _kind = rng.random_range(0..ENTITY_TYPES.len());
            for i in data::entity_attributes(
                &mut rng,
                catalog.len(),
                opts.attributes_per_entity as usize,
            ) {
                let attribute = &catalog[i];
                let value = data::value_for(&mut rng, attribute);
                report.values_by_type[value.value_type().index()] += 1;
                buf.push_str(&format!("{t}\t{id}\t{}", attribute.id));
                value.write_copy_columns(&mut buf);
                buf.push('\n');
            }
            if buf.len() >= CHUNK_BYTES {
                send(&mut sink, &mut buf, "atlasco.entity_values").await?;
            }
        }
    }
    send(&mut sink, &mut buf, "atlasco.entity_values").await?;
    report.values = sink
        .as_mut()
        .finish()
        .await
        .context("finishing COPY into atlasco.entity_values")?;
    Ok(report)
}

async fn send(
    sink: &mut std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    buf: &mut String,
    table: &str,
) -> Result<(), LoadgenError> {
    if buf.is_empty() {
        return Ok(());
    }
    let chunk = Bytes::from(std::mem::take(buf));
    sink.send(chunk)
        .await
        .context(format!("sending COPY data to {table}"))
}

async fn copy(client: &Client, statement: &str, rows: String) -> Result<u64, LoadgenError> {
    let sink = client
        .copy_in(statement)
        .await
        .context(statement.to_string())?;
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from(rows))
        .await
        .context(statement.to_string())?;
    sink.as_mut().finish().await.context(statement.to_string())
}
