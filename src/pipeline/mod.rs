//! Wires the stages: source → sink, acknowledgements back, heartbeats beside.
//!
//! Shutdown cascades: only the source watches the signal; it stops reading and drops its
//! output, the sink drains, syncs and publishes its last durable position, and the source
//! confirms that position to PostgreSQL before the process exits.

pub mod ack;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn, Instrument};

use crate::config::{Pipeline, SnapshotMode};
use crate::jsonl::{JsonlError, JsonlSink};
use crate::lsn::Lsn;
use crate::pg;
use crate::source::replication::{Capture, SnapshotLink, Stopped};
use crate::source::snapshot::{self, Job, ProgressFile};
use crate::source::{heartbeat, slot, SourceError};

/// Events buffered between the source and the sink; a full channel slows the WAL reader.
pub const EVENT_BUFFER: usize = 4096;
/// How long the sink may take to drain and sync at shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long the final confirmation may take (the server may be the thing that is gone).
const FINISH_DEADLINE: Duration = Duration::from_secs(10);

/// Where captured changes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    Jsonl(PathBuf),
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("jsonl", path)) if !path.is_empty() => Ok(SinkSpec::Jsonl(PathBuf::from(path))),
            _ => Err(format!("{s:?}: expected jsonl:PATH")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] JsonlError),
    #[error(
        "the sink did not drain within {0:?}: forced stop, unsynced changes will be read again"
    )]
    DrainTimeout(Duration),
    #[error("the sink task failed: {0}")]
    SinkTask(String),
}

impl PipelineError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PipelineError::Source(e) if e.is_transient())
    }
}

/// Where snapshot progress lives: beside the sink, whose durability it follows.
pub fn progress_path(sink: &std::path::Path) -> PathBuf {
    let mut name = sink.as_os_str().to_owned();
    name.push(".snapshot.json");
    PathBuf::from(name)
}

/// Runs capture into `sink` until `shutdown` or an error; returns the confirmed position.
pub async fn run(
    pipeline: &Pipeline,
    sink: &SinkSpec,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Lsn, PipelineError> {
    let source = &pipeline.source;
    let span = tracing::info_span!("capture", pipeline = %pipeline.name, stage = "source");
    let SinkSpec::Jsonl(path) = sink;
    let (jsonl, resuming) = JsonlSink::open(path)?;

    let pg_config = source.url.to_config();
    let catalog = pg::connect(&pg_config).await.map_err(SourceError::from)?;
    let slot_state = slot::ensure(&catalog, source, resuming).await?;
    let capture = Capture::start(&source.url, &source.into(), slot_state, catalog, None)
        .instrument(span.clone())
        .await?;

    // Snapshots: resume unfinished tables, start the ones never snapshotted (mode initial).
    let progress = ProgressFile::open(&progress_path(path))?;
    // Room for every table at start, plus signals that arrive during a snapshot.
    let (jobs, jobs_rx) = mpsc::channel(source.tables.len() + 64);
    let (chunks_tx, chunks) = mpsc::channel(1);
    for t in &source.tables {
        let table = t.value.clone();
        let job = match progress.progress.tables.get(&table.to_string()) {
            Some(p) if p.done => None,
            Some(p) => Some(Job {
                table,
                after_key: p.after_key.clone(),
                rows_read: p.rows,
            }),
            None if source.snapshot.mode == SnapshotMode::Initial => Some(Job {
                table,
                after_key: None,
                rows_read: 0,
            }),
            None => None,
        };
        if let Some(job) = job {
            let _ = jobs.try_send(job);
        }
    }
    let tables = source.tables.iter().map(|t| t.value.clone()).collect();
    let mut capture = capture.with_snapshots(SnapshotLink {
        chunks,
        jobs,
        progress,
        tables,
        ready: None,
    });
    let snapshot_span =
        tracing::info_span!("snapshot", pipeline = %pipeline.name, stage = "snapshot");
    let worker = snapshot::worker(
        pg_config.clone(),
        source.slot.clone(),
        source.snapshot.chunk_rows,
        jobs_rx,
        chunks_tx,
    );
    // Streaming goes on without the worker; its cursor is saved, so a restart resumes it.
    let snapshot_task = tokio::spawn(
        async move {
            if let Err(e) = worker.await {
                error!(error = %e, "snapshots stopped (streaming goes on; restart to resume them)");
            }
        }
        .instrument(snapshot_span),
    );

    let (events, events_rx) = mpsc::channel(EVENT_BUFFER);
    let (durable_tx, mut durable) = watch::channel(slot_state.confirmed_flush);
    let sink_span = tracing::info_span!("sink", pipeline = %pipeline.name, stage = "jsonl");
    let mut sink_task = tokio::spawn(jsonl.run(events_rx, durable_tx).instrument(sink_span));
    let heartbeat_task = tokio::spawn(heartbeat::run(pg_config, source.heartbeat_interval.0));

    let streamed = capture
        .stream(&events, &mut durable, &mut shutdown)
        .instrument(span.clone())
        .await;
    match &streamed {
        Ok(Stopped::Shutdown) => info!(parent: &span, "shutdown requested: draining"),
        Ok(Stopped::EndOfStream) => warn!(parent: &span, "the server ended the replication stream"),
        Err(e) => error!(parent: &span, error = %e, "capture failed: draining what was read"),
    }
    snapshot_task.abort();
    drop(events);
    let drained = match tokio::time::timeout(DRAIN_DEADLINE, &mut sink_task).await {
        Err(_) => {
            sink_task.abort();
            return Err(PipelineError::DrainTimeout(DRAIN_DEADLINE));
        }
        Ok(Err(join)) => Err(PipelineError::SinkTask(join.to_string())),
        Ok(Ok(result)) => result.map(|_| ()).map_err(PipelineError::from),
    };
    heartbeat_task.abort();
    let last_durable = *durable.borrow();
    // Confirm what is durable even when the stream failed: it is safe, and saves a replay.
    let confirmed = match tokio::time::timeout(FINISH_DEADLINE, capture.finish(last_durable).instrument(span)).await {
        Ok(result) => result,
        Err(_) => Err(SourceError::Slot(format!(
            "the final confirmation of {last_durable} did not complete within {FINISH_DEADLINE:?}; a restart re-reads from the slot's last confirmed position"
        ))),
    };
    // The sink's own failure is the cause when the source only saw it stop acknowledging.
    match (streamed, drained) {
        (Err(SourceError::SinkGone(_)) | Ok(_), Err(sink)) => Err(sink),
        (Err(source), _) => Err(source.into()),
        // Nobody asked it to stop: a restart (exit 75) resumes from what was confirmed.
        (Ok(Stopped::EndOfStream), Ok(())) => Err(SourceError::StreamEnded.into()),
        (Ok(Stopped::Shutdown), Ok(())) => Ok(confirmed?),
    }
}
