//! One capture run for `scripts/bench-capture.sh`: stream a slot up to an LSN into a null
//! output or the jsonl output and report rows, time and peak memory. The script runs it beside
//! `pg_recvlogical` on a copy of the same slot, so both read the same WAL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::change::SourceEvent;
use crate::config::PgUrl;
use crate::jsonl::JsonlOutput;
use crate::lsn::Lsn;
use crate::pg;
use crate::pipeline::PipelineError;
use crate::source::replication::{Capture, StreamSettings};
use crate::source::slot::SlotState;
use crate::source::SourceError;

pub struct CaptureRun {
    pub changes: u64,
    pub elapsed: Duration,
    /// Peak resident set of this process, KiB (VmHWM).
    pub peak_rss_kib: u64,
}

pub async fn run(
    url: &PgUrl,
    stream: StreamSettings,
    until: Lsn,
    jsonl: Option<PathBuf>,
) -> Result<CaptureRun, PipelineError> {
    let catalog = pg::connect(&url.to_config())
        .await
        .map_err(SourceError::from)?;
    let confirmed_flush = crate::source::slot::confirmed(&catalog, &stream.slot).await?;
    let started = Instant::now();
    let mut capture = Capture::start(
        url,
        &stream,
        SlotState {
            confirmed_flush,
            created: false,
        },
        catalog,
        Some(until),
    )
    .await?;
    let (events, events_rx) = mpsc::channel(crate::pipeline::EVENT_BUFFER);
    let (durable_tx, mut durable) = watch::channel(confirmed_flush);
    let consumer = tokio::spawn(async move {
        match jsonl {
            Some(path) => {
                let (output, _) = JsonlOutput::open(&path)?;
                output.run(events_rx, durable_tx).await
            }
            None => Ok(null_output(events_rx, durable_tx).await),
        }
    });
    let (_keep, mut never) = watch::channel(false);
    capture.stream(&events, &mut durable, &mut never).await?;
    drop(events);
    let changes = consumer
        .await
        .map_err(|e| PipelineError::OutputTask(e.to_string()))??;
    let elapsed = started.elapsed();
    let last = *durable.borrow();
    capture.finish(last).await?;
    Ok(CaptureRun {
        changes,
        elapsed,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Acknowledges every transaction as it arrives; returns the changes seen.
async fn null_output(mut rx: mpsc::Receiver<SourceEvent>, durable: watch::Sender<Lsn>) -> u64 {
    let mut changes = 0;
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Change(_) => changes += 1,
            SourceEvent::Commit { end_lsn, .. } => {
                durable.send_replace(end_lsn);
            }
            SourceEvent::Begin { .. } => {}
        }
    }
    changes
}

pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
