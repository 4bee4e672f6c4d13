//! The read router: tells an application where to read a table from (the warehouse, a
//! replica or the primary) given how stale it may read, and serves every table's freshness
//! per stage. Answers come from memory: the freshness board and what the probes last saw
//! ([`probe`]), never from a database round trip per request.

mod decide;
mod probe;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use decide::{decide, Candidate, Decision, Need, Target};

use crate::config::Pipeline;
use crate::freshness::{board, Stage, TableFreshness};
use crate::lsn::Lsn;
use crate::pipeline::readiness;
use crate::telemetry::names;

/// The API's OpenAPI document, served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("openapi.yaml");

/// What the handlers read.
#[derive(Clone)]
struct Api {
    /// Source table → its budget, if it has a class.
    tables: Arc<BTreeMap<String, Option<Duration>>>,
    classes: Arc<BTreeMap<String, Duration>>,
    primary: Arc<str>,
    seen: probe::Shared,
    /// Whether this process's board knows every partition's loaded stage (it runs the
    /// whole sink half, or none and takes the warehouse's records).
    board_is_whole: bool,
}

/// Starts the probes (until `stopped`) and returns the API's routes, served beside
/// `/metrics`. `share`: the sink share this process runs, if it runs one.
pub fn start(
    p: Arc<Pipeline>,
    share: Option<crate::batcher::Share>,
    stopped: watch::Receiver<bool>,
) -> axum::Router {
    let router = Api {
        tables: Arc::new(
            p.source
                .tables
                .iter()
                .map(|t| (t.value.to_string(), p.budget(&t.value)))
                .collect(),
        ),
        classes: Arc::new(
            p.freshness_classes
                .iter()
                .map(|(c, d)| (c.clone(), d.0))
                .collect(),
        ),
        primary: crate::pg::endpoint(&p.source.url.to_config()).into(),
        seen: probe::Shared::default(),
        board_is_whole: share.is_none(),
    };
    tokio::spawn(probe::run(p, router.seen.clone(), stopped));
    axum::Router::new()
        .route("/v1/route", get(route))
        .route("/v1/freshness", get(freshness))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.yaml",
            get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }),
        )
        .with_state(router)
}

/// `GET /v1/freshness`.
#[derive(Debug, serde::Serialize)]
struct Freshness {
    /// RFC 3339, UTC: the time the lags count to.
    now: String,
    tables: Vec<TableFreshness>,
}

async fn freshness() -> Response {
    let now = chrono::Utc::now();
    json(
        StatusCode::OK,
        &Freshness {
            now: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tables: board().snapshot(now.timestamp_millis()),
        },
    )
}

/// `GET /readyz`.
#[derive(Debug, serde::Serialize)]
struct Readiness {
    ready: bool,
    halves: BTreeMap<&'static str, HalfReadiness>,
}

#[derive(Debug, serde::Serialize)]
struct HalfReadiness {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn readyz() -> Response {
    let (ready, halves) = readiness::report(chrono::Utc::now().timestamp_millis());
    let halves = halves
        .into_iter()
        .map(|(half, state)| {
            let (ready, reason) = match state {
                Ok(()) => (true, None),
                Err(why) => (false, Some(why)),
            };
            (half, HalfReadiness { ready, reason })
        })
        .collect();
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, &Readiness { ready, halves })
}

/// `GET /v1/route?table=T&(max_staleness=D|class=C|after_lsn=L)`.
async fn route(State(r): State<Api>, RawQuery(query): RawQuery) -> Response {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (table, need) = match r.request(query.as_deref().unwrap_or("")) {
        Ok(req) => req,
        Err(message) => return json(StatusCode::BAD_REQUEST, &ApiError { error: message }),
    };
    let d = decide(need, &r.candidates(&table), &r.primary, now_ms);
    metrics::counter!(names::ROUTER_DECISIONS_TOTAL, "target" => d.target.as_str(), "reason" => d.reason)
        .increment(1);
    json(StatusCode::OK, &d)
}

#[derive(Debug, serde::Serialize)]
struct ApiError {
    error: String,
}

impl Api {
    /// The table and what the read needs, or what is wrong with the query.
    fn request(&self, query: &str) -> Result<(String, Need), String> {
        let mut table = None;
        let mut needs = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "table" => table = Some(v.into_owned()),
                "max_staleness" => {
                    let d = humantime::parse_duration(&v).map_err(|e| {
                        format!("max_staleness={v:?}: {e}; expected a duration such as 0ms, 500ms, 30s or 15m")
                    })?;
                    needs.push(Need::Staleness(d));
                }
                "class" => {
                    let d = self.classes.get(&*v).ok_or_else(|| {
                        format!(
                            "class={v:?}: no such freshness class (defined: {})",
                            self.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })?;
                    needs.push(Need::Staleness(*d));
                }
                "after_lsn" => {
                    let lsn: Lsn = v.parse().map_err(|_| {
                        format!("after_lsn={v:?}: expected a PostgreSQL LSN such as 0/16B3748")
                    })?;
                    needs.push(Need::Applied(lsn));
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: expected table and one of max_staleness, class, after_lsn"
                    ))
                }
            }
        }
        let table =
            table.ok_or("table is missing: /v1/route?table=schema.table&max_staleness=30s")?;
        let Some(budget) = self.tables.get(&table) else {
            return Err(format!(
                "table={table:?}: not a captured table (source.tables: {})",
                self.tables.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        let need = match (needs.as_slice(), budget) {
            ([need], _) => *need,
            ([], Some(b)) => Need::Staleness(*b),
            ([], None) => {
                return Err(format!(
                    "{table} has no freshness class: give max_staleness, class or after_lsn"
                ))
            }
            _ => return Err("give one of max_staleness, class and after_lsn, not several".into()),
        };
        Ok((table, need))
    }

    /// The warehouse, then the replicas freshest first, as last seen for `table`.
    fn candidates(&self, table: &str) -> Vec<Candidate> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(1 + seen.replicas.len());
        if let Some((endpoint, loaded)) = &seen.warehouse {
            // What the loaders recorded, or this process's board when it knows the whole
            // table (fresher: records are written each second or five); never a sink
            // share's board, which knows only its own partitions.
            let here = match self.board_is_whole {
                true => board().watermark(table, Stage::Loaded),
                false => None,
            };
            let seen = match loaded {
                Ok(recorded) => Ok(match (recorded.get(table).copied(), here) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }),
                Err(e) => Err(e.clone()),
            };
            out.push(Candidate {
                target: Target::Warehouse,
                name: "warehouse".into(),
                endpoint: endpoint.clone(),
                seen,
            });
        }
        let mut replicas: Vec<Candidate> = seen
            .replicas
            .iter()
            .map(|(name, endpoint, seen)| Candidate {
                target: Target::Replica,
                name: name.clone(),
                endpoint: endpoint.clone(),
                seen: seen.clone(),
            })
            .collect();
        // Freshest first (those down last): if it is not fresh enough, none is.
        replicas.sort_by_key(|c| {
            std::cmp::Reverse(c.seen.as_ref().ok().and_then(|w| w.map(|w| w.commit_ms)))
        });
        out.extend(replicas);
        out
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
