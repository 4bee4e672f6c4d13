//! The probes: on `router.poll_interval`, the primary's WAL position, each replica's replay
//! position and time, and the warehouse's recorded loaded watermarks. Requests read what the
//! last round saw; no request waits for a database.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::config::Pipeline;
use crate::freshness::Watermark;
use crate::loader::LoadedWatermarks;
use crate::lsn::Lsn;
use crate::telemetry::names;

/// Primary positions remembered, one per round: a replica that has replayed up to one of
/// them held everything committed when it was read.
const HISTORY: usize = 600;

/// What the last round saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per replica (in the pipeline's order): its name, endpoint and freshness.
    pub replicas: Vec<(String, String, Result<Option<Watermark>, String>)>,
    /// The warehouse's endpoint and, when it answered, its tables' loaded watermarks.
    pub warehouse: Option<(String, Result<Loaded, String>)>,
}

/// Per table, the commit up to which the warehouse holds everything.
pub type Loaded = BTreeMap<String, Watermark>;

pub type Shared = Arc<RwLock<Seen>>;

struct Replica {
    name: String,
    config: crate::pg::Dsn,
    endpoint: String,
    client: Option<Client>,
}

/// Probes until `stopped` into `seen`: the primary, the replicas and a PostgreSQL warehouse
/// each `router.poll_interval`; Redshift at most every [`REDSHIFT_EVERY`] (a Data API round
/// trip takes seconds).
pub async fn run(p: Arc<Pipeline>, seen: Shared, stopped: watch::Receiver<bool>) {
    tokio::join!(
        databases(p.clone(), seen.clone(), stopped.clone()),
        warehouse(p, seen, stopped)
    );
}

/// How often Redshift's recorded watermarks are read, at most, and how long a read may take.
const REDSHIFT_EVERY: Duration = Duration::from_secs(5);
const WAREHOUSE_TIMEOUT: Duration = Duration::from_secs(30);

async fn databases(p: Arc<Pipeline>, seen: Shared, mut stopped: watch::Receiver<bool>) {
    let interval = p.router.poll_interval.0.max(Duration::from_millis(100));
    // A host that does not answer costs one round, never the others.
    let timeout = interval.max(Duration::from_secs(2));
    let primary_config = p.source.url.to_config();
    let slot = p.source.slot.clone();
    let mut primary: Option<Client> = None;
    let mut history: VecDeque<(Lsn, i64)> = VecDeque::new();
    let mut replicas: Vec<Replica> = p
        .router
        .replicas
        .iter()
        .map(|r| {
            let config = r.url.to_config();
            Replica {
                name: r.name.value.clone(),
                endpoint: crate::pg::endpoint(&config),
                config,
                client: None,
            }
        })
        .collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        // The primary first: a replica at or past what it says now holds everything
        // committed before the question was asked (so the clock is read first).
        let asked_ms = chrono::Utc::now().timestamp_millis();
        match tokio::time::timeout(
            timeout,
            primary_position(&primary_config, &mut primary, &slot),
        )
        .await
        {
            Ok(Ok(lsn)) => {
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back((lsn, asked_ms));
            }
            Ok(Err(error)) => {
                primary = None;
                tracing::debug!(%error, "router: the primary's position");
            }
            Err(_) => primary = None,
        }
        let mut got = Vec::with_capacity(replicas.len());
        for r in &mut replicas {
            let result = match tokio::time::timeout(timeout, replica(r, &history)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            if result.is_err() {
                r.client = None;
            }
            got.push((r.name.clone(), r.endpoint.clone(), result));
        }
        seen.write().unwrap_or_else(|e| e.into_inner()).replicas = got;
    }
}

async fn warehouse(p: Arc<Pipeline>, seen: Shared, mut stopped: watch::Receiver<bool>) {
    if p.warehouse.is_none() {
        return;
    }
    let mut warehouse: Option<LoadedWatermarks> = None;
    let redshift = p
        .warehouse
        .as_ref()
        .is_some_and(|w| w.driver.value == crate::config::WarehouseDriver::RedshiftData);
    let every = match redshift {
        true => p.router.poll_interval.0.max(REDSHIFT_EVERY),
        false => p.router.poll_interval.0.max(Duration::from_millis(100)),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let result = match tokio::time::timeout(WAREHOUSE_TIMEOUT, loaded(&p, &mut warehouse)).await
        {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {WAREHOUSE_TIMEOUT:?}")),
        };
        match &result {
            // What the loaders recorded is this process's loaded stage too (a router or a
            // capture half apart from the sink half has no other).
            Ok(loaded) => {
                for (table, w) in loaded {
                    crate::freshness::board().advance(table, crate::freshness::Stage::Loaded, *w);
                }
            }
            Err(_) => warehouse = None,
        }
        let endpoint = warehouse
            .as_ref()
            .map_or_else(|| warehouse_endpoint(&p), |w| w.endpoint());
        seen.write().unwrap_or_else(|e| e.into_inner()).warehouse = Some((endpoint, result));
    }
}

/// The warehouse's endpoint before a connection says it.
pub fn warehouse_endpoint(p: &Pipeline) -> String {
    match p.warehouse.as_ref() {
        Some(w) => match (&w.postgres, &w.redshift_data) {
            (Some(pg), _) => crate::pg::endpoint(&pg.url.to_config()),
            (_, Some(r)) => {
                let r = &r.value;
                let on = r
                    .workgroup_name
                    .as_deref()
                    .or(r.cluster_identifier.as_deref())
                    .unwrap_or("redshift");
                format!("{on}/{}", r.database)
            }
            _ => "the warehouse".into(),
        },
        None => "the warehouse".into(),
    }
}

async fn connect(config: &crate::pg::Dsn, client: &mut Option<Client>) -> Result<(), String> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = Some(
            crate::pg::connect(config)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(())
}

/// The primary's WAL position; sets the slot's retained and safe WAL gauges on the way.
async fn primary_position(
    config: &crate::pg::Dsn,
    client: &mut Option<Client>,
    slot: &str,
) -> Result<Lsn, String> {
    connect(config, client).await?;
    let Some(c) = client else {
        return Err("not connected".into());
    };
    let row = c
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, \
             (SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1), \
             (SELECT safe_wal_size FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|e| e.to_string())?;
    if let Some(retained) = row.get::<_, Option<i64>>(1) {
        metrics::gauge!(names::SOURCE_SLOT_RETAINED_WAL_BYTES, "slot" => slot.to_owned())
            .set(retained as f64);
    }
    if let Some(safe) = row.get::<_, Option<i64>>(2) {
        metrics::gauge!(names::SOURCE_SLOT_SAFE_WAL_BYTES, "slot" => slot.to_owned())
            .set(safe as f64);
    }
    row.get::<_, String>(0)
        .parse()
        .map_err(|e| format!("pg_current_wal_lsn: {e}"))
}

/// A replica's freshness: everything up to the newest primary position it has replayed
/// (read at that round's time); else up to its last replayed commit.
async fn replica(
    r: &mut Replica,
    history: &VecDeque<(Lsn, i64)>,
) -> Result<Option<Watermark>, String> {
    connect(&r.config, &mut r.client).await?;
    let Some(c) = &r.client else {
        return Err("not connected".into());
    };
    let row = c
        .query_one(
            "SELECT pg_is_in_recovery(), \
             coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text, \
             (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::bigint",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let in_recovery: bool = row.get(0);
    let lsn: Lsn = row
        .get::<_, String>(1)
        .parse()
        .map_err(|e| format!("replay position: {e}"))?;
    if !in_recovery {
        // Promoted, or never a replica: it no longer follows the primary.
        return Err("not in recovery: it does not follow the primary (promoted?)".into());
    }
    if let Some(&(_, at)) = history.iter().rev().find(|(p, _)| *p <= lsn) {
        return Ok(Some(Watermark { lsn, commit_ms: at }));
    }
    // Nothing known until it replays a transaction or passes a primary position.
    Ok(row
        .get::<_, Option<i64>>(2)
        .map(|commit_ms| Watermark { lsn, commit_ms }))
}

async fn loaded(
    p: &Pipeline,
    warehouse: &mut Option<LoadedWatermarks>,
) -> Result<BTreeMap<String, Watermark>, String> {
    if warehouse.is_none() {
        *warehouse = LoadedWatermarks::connect(p)
            .await
            .map_err(|e| e.to_string())?;
    }
    match warehouse {
        Some(w) => w.read().await.map_err(|e| e.to_string()),
        None => Err("no warehouse section".into()),
    }
}
