//! Freshness: per table and per stage, the watermark up to which everything is durable
//! there, the lag it implies against the table's budget, and the breaches.
//!
//! A watermark is a commit (its end LSN and commit time, the source's clock): every change of
//! the table committed at or before it is durable at the stage. The lag at a stage is now
//! minus the watermark's commit time: a bound on how stale a read there can be. A stage cannot
//! know of a change it has not seen, so quiet tables need proof that nothing older is missing:
//! the heartbeats (a WAL message every `source.heartbeat_interval`) are commits too, and move
//! every table's watermark at every stage once they have passed it. An idle table's lag so
//! stays near the heartbeat interval plus the stages' own delay instead of growing.
//!
//! The stages report into one board per process ([`board`]), as they report metrics into
//! one registry; the board serves `/v1/freshness`, sets the lag gauges and reports breaches
//! ([`evaluate`], each second).

mod board;

use std::collections::BTreeMap;
use std::time::Duration;

pub use board::{board, Board, StageFreshness, TableFreshness};

use crate::lsn::Lsn;
use crate::telemetry::{self, names, Event};

/// Where a change is durable, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Read from the WAL and decoded (the capture half's memory).
    Captured,
    /// Acknowledged by the Kafka brokers.
    Kafka,
    /// In a durable lake object.
    Lake,
    /// Loaded into the warehouse.
    Loaded,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Captured, Stage::Kafka, Stage::Lake, Stage::Loaded];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Captured => "captured",
            Stage::Kafka => "kafka",
            Stage::Lake => "lake",
            Stage::Loaded => "loaded",
        }
    }
}

/// A commit up to which a stage holds everything.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Watermark {
    /// The commit's end position.
    pub lsn: Lsn,
    /// The commit time, Unix milliseconds (the source's clock).
    pub commit_ms: i64,
}

impl Watermark {
    /// From a commit's end position and PostgreSQL timestamp.
    pub fn of_commit(lsn: Lsn, commit_ts: crate::change::PgTimestamp) -> Watermark {
        Watermark {
            lsn,
            commit_ms: crate::change::unix_micros(commit_ts) / 1000,
        }
    }

    /// The staleness bound it implies at `now_ms`: never negative (the clocks differ).
    pub fn lag(&self, now_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(self.commit_ms)).unwrap_or(0))
    }
}

/// The topic the capture half publishes its Kafka watermarks on: compacted, one partition.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}._watermarks")
}

/// The one key of the watermark topic: compaction keeps the newest.
pub const MARK_KEY: &str = "watermark";

/// A watermark as the watermark topic carries it: every change of the `complete` tables
/// committed up to it is in the topics below `offsets` (topic → partition → the offset after
/// its last record).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    #[serde(flatten)]
    pub watermark: Watermark,
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The tables the mark speaks for: those not being snapshotted. Named rather than the
    /// others left out, so a mark from before a table was added says nothing of it. Absent
    /// (marks of capture without snapshots, or of earlier versions): every table whose topic
    /// the mark has offsets for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<Vec<String>>,
}

impl Mark {
    /// Whether the mark speaks for `table`, written to `topic`.
    pub fn covers(&self, table: &str, topic: &str) -> bool {
        match &self.complete {
            Some(complete) => complete.iter().any(|t| t == table),
            None => self.offsets.contains_key(topic),
        }
    }
}

/// Sets the lag gauges and reports breaches each second until `stopped`.
pub async fn evaluate(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for change in board().evaluate(now_ms) {
            report(change);
        }
    }
}

/// A table's stage entering or leaving breach.
#[derive(Clone, Debug, PartialEq)]
pub struct BreachChange {
    pub table: String,
    pub stage: Stage,
    pub lag: Duration,
    pub budget: Duration,
    pub breached: bool,
}

fn report(c: BreachChange) {
    if c.breached {
        metrics::counter!(names::FRESHNESS_BREACHES_TOTAL, "table" => c.table.clone(), "stage" => c.stage.as_str())
            .increment(1);
        telemetry::emit(Event::FreshnessBreached {
            table: c.table,
            stage: c.stage.as_str(),
            lag: c.lag,
            budget: c.budget,
        });
    } else {
        telemetry::emit(Event::FreshnessRestored {
            table: c.table,
            stage: c.stage.as_str(),
            lag: c.lag,
            budget: c.budget,
        });
    }
}
