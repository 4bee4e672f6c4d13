//! Telemetry: the metrics registry, served as Prometheus text on `/metrics`, and the typed
//! events every stage reports through ([`emit`]). The HTTP listener runs beside the halves,
//! never under their restarts; the read router's API joins it on the same address.

mod event;
pub mod names;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

pub use event::{emit, subscribe, Event};

/// Latency buckets (seconds) from 1 ms to an hour: the budget matrix runs from 0 ms alerts to
/// 15 min exports.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];
/// How often histograms are compacted between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the metrics recorder: {0}")]
    Recorder(String),
    #[error("cannot listen on {addr} (router.listen): {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// The process's recorder, installed on first use (tests run several pipelines per process).
pub fn install() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    names::describe();
    event::export_known();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `/metrics` and `routes` on `addr` until `stopped`; returns the bound address (port
/// 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    routes: axum::Router,
    stopped: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), TelemetryError> {
    let handle = install()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| TelemetryError::Listen { addr, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| TelemetryError::Listen { addr, error })?;
    let upkeep = handle.clone();
    let mut upkeep_stop = stopped.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                _ = upkeep_stop.wait_for(|s| *s) => return,
            }
        }
    });
    let app = routes.route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tracing::info!(%bound, "serving /metrics and the API");
    let mut stop = stopped;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "the HTTP listener failed");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_reaches_subscribers_and_counts_under_its_kind_and_stage() {
        let handle = install().unwrap();
        let mut events = subscribe();
        let event = Event::FileWritten {
            table: "atlasco.entities".into(),
            key: "atlasco.entities/dt=2026-11-30/0-0-9.parquet".into(),
            rows: 10,
            bytes: 4096,
            reason: "age",
        };
        emit(event.clone());
        // Other tests of this process may emit too: find ours.
        loop {
            if events.recv().await.unwrap() == event {
                break;
            }
        }
        let text = handle.render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("freshet_events_total{kind=\"file_written\",stage=\"batcher\"}")
            })
            .unwrap_or_else(|| panic!("no event counter in:\n{text}"));
        let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{line}");
    }
}
