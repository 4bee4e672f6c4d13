//! The read router's HTTP API: where an application should read a table from, given how
//! stale it may read, and every table's freshness per stage. It answers from the freshness
//! board in memory, never with a database round trip per request.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::freshness::{board, TableFreshness};

/// The API's routes, served beside `/metrics`.
pub fn api() -> axum::Router {
    axum::Router::new()
        .route("/v1/freshness", get(freshness))
        .route("/healthz", get(|| async { "ok\n" }))
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

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
