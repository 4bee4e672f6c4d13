//! Notable events as typed values: each logs once, counts under `freshet_events_total{kind}`
//! and reaches in-process subscribers, so tests assert events, not log text.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::{error, info, warn};

use super::names;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A stage is waiting on its downstream endpoint: nothing past its last durable point
    /// is acknowledged meanwhile.
    Stalled {
        stage: &'static str,
        endpoint: String,
        waited: Duration,
        error: String,
    },
    /// The endpoint took writes again after a stall.
    Recovered {
        stage: &'static str,
        endpoint: String,
        waited: Duration,
    },
    /// A half failed transiently and restarts from its durable position.
    Restarted {
        half: &'static str,
        error: String,
        retry_in: Duration,
    },
    /// A lake object is durable.
    FileWritten {
        table: String,
        key: String,
        rows: u64,
        bytes: u64,
        reason: &'static str,
    },
    /// The store refused an object for good (permissions, a missing bucket): the batcher stops.
    ObjectRejected {
        endpoint: String,
        key: String,
        error: String,
    },
    /// Objects loaded into the warehouse in one transaction.
    Loaded {
        table: String,
        objects: usize,
        rows: u64,
        took: Duration,
    },
    /// A lake object the loader cannot read (corrupt, or not the lake's): skipped, never
    /// loaded.
    ObjectSkipped {
        table: String,
        key: String,
        error: String,
    },
    /// A table whose loads stop (a change the warehouse cannot follow): the other tables go on.
    TableStopped { table: String, error: String },
    /// A stage's lag passed the table's freshness budget.
    FreshnessBreached {
        table: String,
        stage: &'static str,
        lag: Duration,
        budget: Duration,
    },
    /// A stage's lag is within the table's budget again.
    FreshnessRestored {
        table: String,
        stage: &'static str,
        lag: Duration,
        budget: Duration,
    },
}

impl Event {
    /// The `stage` label: where it happened (a half, for restarts).
    pub fn stage(&self) -> &'static str {
        match self {
            Event::Stalled { stage, .. }
            | Event::Recovered { stage, .. }
            | Event::FreshnessBreached { stage, .. }
            | Event::FreshnessRestored { stage, .. } => stage,
            Event::Restarted { half, .. } => half,
            Event::FileWritten { .. } => "batcher",
            Event::ObjectRejected { .. } => "store",
            Event::Loaded { .. } | Event::ObjectSkipped { .. } | Event::TableStopped { .. } => {
                "loader"
            }
        }
    }

    /// The `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Stalled { .. } => "stalled",
            Event::Recovered { .. } => "recovered",
            Event::Restarted { .. } => "restarted",
            Event::FileWritten { .. } => "file_written",
            Event::ObjectRejected { .. } => "object_rejected",
            Event::Loaded { .. } => "loaded",
            Event::ObjectSkipped { .. } => "object_skipped",
            Event::TableStopped { .. } => "table_stopped",
            Event::FreshnessBreached { .. } => "freshness_breached",
            Event::FreshnessRestored { .. } => "freshness_restored",
        }
    }
}

fn channel() -> &'static broadcast::Sender<Event> {
    static CHANNEL: OnceLock<broadcast::Sender<Event>> = OnceLock::new();
    CHANNEL.get_or_init(|| broadcast::channel(4096).0)
}

/// Events from now on (a slow subscriber misses the oldest, never blocks the pipeline).
pub fn subscribe() -> broadcast::Receiver<Event> {
    channel().subscribe()
}

/// The events whose labels are known in advance, as (kind, stage): exported at 0 from the
/// start, so an alert's `increase()` sees the first one (a series appearing at 1 is no
/// increase to it).
const KNOWN: [(&str, &str); 5] = [
    ("file_written", "batcher"),
    ("object_rejected", "store"),
    ("loaded", "loader"),
    ("object_skipped", "loader"),
    ("table_stopped", "loader"),
];

/// Exports [`KNOWN`] events' counters at 0.
pub(super) fn export_known() {
    for (kind, stage) in KNOWN {
        metrics::counter!(names::EVENTS_TOTAL, "kind" => kind, "stage" => stage).increment(0);
    }
}

/// Logs, counts and publishes one event.
pub fn emit(event: Event) {
    match &event {
        Event::Stalled {
            stage,
            endpoint,
            waited,
            error,
        } => {
            warn!(stage, %endpoint, ?waited, %error, "stalled: waiting for {endpoint}; nothing past the last durable point is acknowledged")
        }
        Event::Recovered {
            stage,
            endpoint,
            waited,
        } => info!(stage, %endpoint, ?waited, "{endpoint} takes writes again"),
        Event::Restarted {
            half,
            error,
            retry_in,
        } => warn!(half, %error, ?retry_in, "{half} failed; restarting from its durable position"),
        Event::FileWritten {
            table,
            key,
            rows,
            bytes,
            reason,
        } => info!(%table, %key, rows, bytes, reason, "lake object written"),
        Event::ObjectRejected {
            endpoint,
            key,
            error,
        } => warn!(%endpoint, %key, %error, "the store rejected an object"),
        Event::Loaded {
            table,
            objects,
            rows,
            took,
        } => info!(%table, objects, rows, ?took, "loaded into the warehouse"),
        Event::ObjectSkipped { table, key, error } => {
            error!(%table, %key, %error, "lake object skipped: it is never loaded; move it aside or mend it and replay the table")
        }
        Event::TableStopped { table, error } => {
            error!(%table, %error, "loads of {table} stopped; the other tables go on. Mend the warehouse table (or drop it to rebuild it by replay) and restart the sink")
        }
        Event::FreshnessBreached {
            table,
            stage,
            lag,
            budget,
        } => {
            warn!(%table, stage, ?lag, ?budget, "{table} is {lag:?} behind at stage {stage}, past its budget of {budget:?}")
        }
        Event::FreshnessRestored {
            table,
            stage,
            lag,
            budget,
        } => {
            info!(%table, stage, ?lag, ?budget, "{table} is within its budget at stage {stage} again")
        }
    }
    metrics::counter!(names::EVENTS_TOTAL, "kind" => event.kind(), "stage" => event.stage())
        .increment(1);
    // No subscriber is the normal case outside tests.
    let _ = channel().send(event);
}
