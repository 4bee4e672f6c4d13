//! Steady write load: small transactions of upserts, updates, deletes, new entities, touches
//! of rows whose large value stays unchanged (TOAST), and large values, at a target row rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pg::Dsn;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::time::sleep_until;
use tokio_postgres::{Client, SimpleQueryMessage};
use tracing::{info, warn};

use super::data::{self, Attribute, Value, ValueType, ENTITY_TYPES};
use super::{Context, LoadgenError};
use crate::pg;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Target rows changed per second, across all connections.
    pub rate: u32,
    /// Stop after this long; `None` runs until shutdown.
    pub duration: Option<Duration>,
    pub connections: u32,
    pub seed: u64,
}

/// What one statement of a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Update,
    Delete,
    NewEntity,
    Touch,
    LargeValue,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Upsert,
        Op::Update,
        Op::Delete,
        Op::NewEntity,
        Op::Touch,
        Op::LargeValue,
    ];

    fn pick(rng: &mut impl Rng) -> Op {
        match rng.random_range(0..100) {
            0..45 => Op::Upsert,
            45..73 => Op::Update,
            73..83 => Op::Delete,
            83..88 => Op::NewEntity,
            88..97 => Op::Touch,
            _ => Op::LargeValue,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::NewEntity => "new_entity",
            Op::Touch => "touch",
            Op::LargeValue => "large_value",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub transactions: u64,
    /// Rows the server reported as changed.
    pub rows: u64,
    /// Statements issued per [`Op`], in `Op::ALL` order.
    pub statements: [u64; 6],
    /// Transactions retried after a deadlock or serialization failure.
    pub retries: u64,
    pub elapsed: Duration,
}

impl RunReport {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transactions, {} rows in {:.1}s: {:.0} rows/s ({:.0} txn/s), {} retries; statements:",
            self.transactions,
            self.rows,
            self.elapsed.as_secs_f64(),
            self.rows_per_sec(),
            self.transactions as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.retries
        )?;
        for op in Op::ALL {
            write!(f, " {}={}", op.name(), self.statements[op as usize])?;
        }
        Ok(())
    }
}

/// What exists to write to, read once at start.
struct Target {
    /// (tenant, first entity id, last entity id) from the fill.
    tenants: Vec<(i32, i64, i64)>,
    catalog: Vec<Attribute>,
    strings: Vec<usize>,
    next_entity: i64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    rows: AtomicU64,
    retries: AtomicU64,
    statements: [AtomicU64; 6],
}

pub async fn run(
    config: &Dsn,
    opts: &RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RunReport, LoadgenError> {
    if opts.rate == 0 || opts.connections == 0 {
        return Err(LoadgenError::Invalid(
            "rate and connections must be at least 1".into(),
        ));
    }
    let client = pg::connect(config).await?;
    let target = Arc::new(load_target(&client).await?);
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);

    let mut workers = Vec::new();
    for c in 0..opts.connections {
        let (config, target, counters) = (config.clone(), target.clone(), counters.clone());
        let shutdown = shutdown.clone();
        let per_conn_rate = opts.rate as f64 / opts.connections as f64;
        let rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(c as u64));
        let first_new_entity = target.next_entity + c as i64;
        let stride = opts.connections as i64;
        workers.push(tokio::spawn(async move {
            let client = pg::connect(&config).await?;
            let mut worker = Worker {
                client,
                target,
                counters,
                rng,
                next_entity: first_new_entity,
                stride,
            };
            worker.drive(per_conn_rate, deadline, shutdown).await
        }));
    }

    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    let all_done = async {
        let mut result = Ok(());
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(LoadgenError::Invalid(format!("load worker failed: {e}"))),
            }
        }
        result
    };
    tokio::pin!(all_done);
    let outcome = loop {
        tokio::select! {
            result = &mut all_done => break result,
            _ = tick.tick() => {
                let rows = counters.rows.load(Ordering::Relaxed);
                let rate = (rows - last.1) as f64 / last.0.elapsed().as_secs_f64();
                info!(rows, rows_per_sec = format!("{rate:.0}"), target = opts.rate, "loadgen");
                last = (Instant::now(), rows);
            }
            // A dropped sender disables this branch instead of spinning on its error.
            Ok(()) = shutdown.changed() => {}
        }
    };
    outcome?;
    let mut report = RunReport {
        transactions: counters.transactions.load(Ordering::Relaxed),
        rows: counters.rows.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        ..RunReport::default()
    };
    for (i, n) in counters.statements.iter().enumerate() {
        report.statements[i] = n.load(Ordering::Relaxed);
    }
    Ok(report)
}

async fn load_target(client: &Client) -> Result<Target, LoadgenError> {
    let rows = client
        .query(
            "SELECT tenant_id, min(entity_id), max(entity_id) FROM atlasco.entities GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .context("reading tenants and entity ranges (is the AtlasCo schema loaded?)")?;
    let tenants: Vec<(i32, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let rows = client
        .query(
            "SELECT attribute_id, name, data_type::text FROM atlasco.attributes ORDER BY 1",
            &[],
        )
        .await
        .context("reading the attribute catalog")?;
    let mut catalog = Vec::new();
    for r in rows {
        let type_name: String = r.get(2);
        let value_type = ValueType::from_sql_name(&type_name).ok_or_else(|| {
            LoadgenError::Invalid(format!(
                "unknown value type {type_name:?} in atlasco.attributes"
            ))
        })?;
        catalog.push(Attribute {
            id: r.get(0),
            name: r.get(1),
            value_type,
        });
    }
    let strings: Vec<usize> = catalog
        .iter()
        .enumerate()
        .filter(|(_, a)| a.value_type == ValueType::String)
        .map(|(i, _)| i)
        .collect();
    if tenants.is_empty() || catalog.is_empty() || strings.is_empty() {
        return Err(LoadgenError::Invalid(
            "nothing to write to: run `freshet loadgen fill` first".into(),
        ));
    }
    let max: Option<i64> = client
        .query_one("SELECT max(entity_id) FROM atlasco.entities", &[])
        .await
        .context("reading the highest entity id")?
        .get(0);
    Ok(Target {
        tenants,
        catalog,
        strings,
        next_entity: max.unwrap_or(0) + 1,
    })
}

struct Worker {
    client: Client,
    target: Arc<Target>,
    counters: Arc<Counters>,
    rng: ChaCha8Rng,
    next_entity: i64,
    stride: i64,
}

impl Worker {
    async fn drive(
        &mut self,
        rows_per_sec: f64,
        deadline: Option<Instant>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), LoadgenError> {
        let mut next = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let statements = self.rng.random_range(1..=10);
            let (sql, ops) = self.transaction(statements);
            let rows = self.execute(&sql).await?;
            self.counters.transactions.fetch_add(1, Ordering::Relaxed);
            self.counters.rows.fetch_add(rows, Ordering::Relaxed);
            for op in ops {
                self.counters.statements[op as usize].fetch_add(1, Ordering::Relaxed);
            }
            // Paced by rows actually changed, so the achieved rate is the target rate.
            next += Duration::from_secs_f64(rows.max(1) as f64 / rows_per_sec);
            let now = tokio::time::Instant::now();
            if next > now {
                sleep_until(next).await;
            } else if now - next > Duration::from_secs(1) {
                // Far behind (a stall): resume the target rate instead of bursting to catch up.
                next = now;
            }
        }
    }

    /// Runs one transaction, retrying it on deadlock or serialization failure; returns rows changed.
    async fn execute(&mut self, sql: &str) -> Result<u64, LoadgenError> {
        const ATTEMPTS: u32 = 10;
        let mut attempt = 1;
        loop {
            match self.client.simple_query(sql).await {
                Ok(messages) => {
                    return Ok(messages
                        .iter()
                        .map(|m| match m {
                            SimpleQueryMessage::CommandComplete(n) => *n,
                            _ => 0,
                        })
                        .sum())
                }
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    // The failed transaction is aborted; end it before retrying.
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if attempt > 3 {
                        warn!(attempt, error = %pg::describe(&e), "loadgen transaction retried");
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e).context("loadgen transaction"),
            }
        }
    }

    fn transaction(&mut self, statements: usize) -> (String, Vec<Op>) {
        let mut sql = String::from("BEGIN;");
        let mut ops = Vec::with_capacity(statements);
        for _ in 0..statements {
            let op = Op::pick(&mut self.rng);
            self.statement(op, &mut sql);
            ops.push(op);
        }
        sql.push_str("COMMIT;");
        (sql, ops)
    }

    fn existing_entity(&mut self) -> (i32, i64) {
        let (tenant, first, last) =
            self.target.tenants[self.rng.random_range(0..self.target.tenants.len())];
        (tenant, self.rng.random_range(first..=last))
    }

    fn statement(&mut self, op: Op, sql: &mut String) {
        let target = self.target.clone();
        match op {
            Op::Upsert => {
                let (tenant, entity) = self.existing_entity();
                let attribute = &target.catalog[self.rng.random_range(0..target.catalog.len())];
                let value = data::value_for(&mut self.rng, attribute);
                upsert(sql, tenant, entity, attribute.id, &value);
            }
            Op::Update => {
                // The named attributes exist on every filled entity: a real UPDATE, with old key.
                let (tenant, entity) = self.existing_entity();
                let i = self
                    .rng
                    .random_range(0..data::NAMED.len().min(target.catalog.len()));
                let attribute = &target.catalog[i];
                let value = data::value_for(&mut self.rng, attribute);
                let column = column(attribute.value_type);
                sql.push_str(&format!(
                    "UPDATE atlasco.entity_values SET {column} = {}, updated_at = now() \
                     WHERE tenant_id = {tenant} AND entity_id = {entity} AND attribute_id = {};",
                    value.sql_literal(),
                    attribute.id
                ));
            }
            Op::Delete => {
                // One of the values the entity has, so most deletes delete something.
                let (tenant, entity) = self.existing_entity();
                let nth = self.rng.random_range(0..8);
                sql.push_str(&format!(
                    "DELETE FROM atlasco.entity_values WHERE tenant_id = {tenant} AND entity_id = {entity} \
                     AND attribute_id = (SELECT attribute_id FROM atlasco.entity_values WHERE \
                     tenant_id = {tenant} AND entity_id = {entity} ORDER BY attribute_id OFFSET {nth} LIMIT 1);"
                ));
            }
            Op::NewEntity => {
                let (tenant, _) = self.existing_entity();
                let entity = self.next_entity;
                self.next_entity += self.stride;
                let kind = ENTITY_TYPES[self.rng.random_range(0..ENTITY_TYPES.len())];
                sql.push_str(&format!(
                    "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) \
                     VALUES ({tenant}, {entity}, '{kind}') ON CONFLICT DO NOTHING;"
                ));
                for attribute in target.catalog.iter().take(data::NAMED.len()) {
                    let value = data::value_for(&mut self.rng, attribute);
                    upsert(sql, tenant, entity, attribute.id, &value);
                }
            }
            Op::Touch => {
                // Leaves the value columns alone, on the entity's longest string: when that one
                // is TOASTed, the WAL carries it as "unchanged".
                let (tenant, entity) = self.existing_entity();
                sql.push_str(&format!(
                    "UPDATE atlasco.entity_values SET updated_at = now() WHERE tenant_id = {tenant} \
                     AND entity_id = {entity} AND attribute_id = (SELECT attribute_id FROM \
                     atlasco.entity_values WHERE tenant_id = {tenant} AND entity_id = {entity} \
                     AND string_value IS NOT NULL ORDER BY length(string_value) DESC LIMIT 1);"
                ));
            }
            Op::LargeValue => {
                let (tenant, entity) = self.existing_entity();
                let attribute =
                    &target.catalog[target.strings[self.rng.random_range(0..target.strings.len())]];
                let len = self.rng.random_range(4096..16384);
                let value = Value::String(data::large_string(&mut self.rng, len));
                upsert(sql, tenant, entity, attribute.id, &value);
            }
        }
    }
}

fn column(t: ValueType) -> &'static str {
    match t {
        ValueType::String => "string_value",
        ValueType::Integer => "integer_value",
        ValueType::Float => "float_value",
        ValueType::Boolean => "boolean_value",
        ValueType::Timestamp => "timestamp_value",
    }
}

fn upsert(sql: &mut String, tenant: i32, entity: i64, attribute: i32, value: &Value) {
    let col = column(value.value_type());
    sql.push_str(&format!(
        "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, {col}) \
         VALUES ({tenant}, {entity}, {attribute}, {}) ON CONFLICT (tenant_id, entity_id, attribute_id) \
         DO UPDATE SET string_value = EXCLUDED.string_value, integer_value = EXCLUDED.integer_value, \
         float_value = EXCLUDED.float_value, boolean_value = EXCLUDED.boolean_value, \
         timestamp_value = EXCLUDED.timestamp_value, updated_at = now();",
        value.sql_literal()
    ));
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}
