//! The JSON-lines output: one line per change, fsynced before it is acknowledged. It runs the
//! capture stage end to end without Kafka and stays as the debugging output.
//!
//! Lines are appended in stream order. After a crash the file may end with changes that were
//! written but never acknowledged; capture resumes from the slot and writes them again, with
//! the same identity (`lsn`, `seq`) and content, so a reader keeps the last line per identity.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::change::{Change, Datum, PgTimestamp, Row, SourceEvent, Table};
use crate::lsn::Lsn;

/// Unsynced bytes or time after which the output syncs even while more input is queued.
const SYNC_BYTES: u64 = 8 << 20;
const SYNC_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("jsonl output {}: {what}: {error}", path.display())]
pub struct JsonlError {
    path: PathBuf,
    what: &'static str,
    error: std::io::Error,
}

pub struct JsonlOutput {
    path: PathBuf,
    out: BufWriter<File>,
    unsynced_bytes: u64,
    pending_end: Option<Lsn>,
    last_sync: Instant,
    txn: Option<(u32, PgTimestamp)>,
    lines: u64,
}

impl JsonlOutput {
    /// Opens (creating) the file and drops a torn last line: it was never acknowledged.
    /// Returns the output and whether the file already held changes (a resumed capture).
    pub fn open(path: &Path) -> Result<(JsonlOutput, bool), JsonlError> {
        let err = |what| {
            move |error| JsonlError {
                path: path.to_path_buf(),
                what,
                error,
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(err("opening"))?;
        let len = file.metadata().map_err(err("reading metadata"))?.len();
        let keep = complete_prefix(&mut file, len).map_err(err("reading the tail"))?;
        if keep < len {
            info!(path = %path.display(), dropped_bytes = len - keep, "dropped a torn last line");
            file.set_len(keep).map_err(err("truncating a torn line"))?;
        }
        file.seek(SeekFrom::End(0)).map_err(err("seeking"))?;
        let output = JsonlOutput {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            unsynced_bytes: 0,
            pending_end: None,
            last_sync: Instant::now(),
            txn: None,
            lines: 0,
        };
        Ok((output, keep > 0))
    }

    /// Consumes events until the channel closes, publishing each durable commit end position.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<SourceEvent>,
        durable: watch::Sender<Lsn>,
    ) -> Result<u64, JsonlError> {
        while let Some(event) = input.recv().await {
            self.write(event)?;
            let due = self.unsynced_bytes >= SYNC_BYTES || self.last_sync.elapsed() >= SYNC_AFTER;
            // Group commit: sync when the input is drained for now, or when it is due.
            if self.pending_end.is_some() && (input.is_empty() || due) {
                self.sync(&durable).await?;
            }
        }
        self.sync(&durable).await?;
        info!(path = %self.path.display(), lines = self.lines, "jsonl output closed");
        Ok(self.lines)
    }

    fn write(&mut self, event: SourceEvent) -> Result<(), JsonlError> {
        match event {
            SourceEvent::Begin { xid, commit_ts, .. } => self.txn = Some((xid, commit_ts)),
            SourceEvent::Change(change) => {
                let (xid, commit_ts) = self.txn.unwrap_or_default();
                let mut line =
                    serde_json::to_vec(&line(&change, xid, commit_ts)).map_err(|e| JsonlError {
                        path: self.path.clone(),
                        what: "encoding",
                        error: e.into(),
                    })?;
                line.push(b'\n');
                self.out.write_all(&line).map_err(|error| JsonlError {
                    path: self.path.clone(),
                    what: "writing",
                    error,
                })?;
                self.unsynced_bytes += line.len() as u64;
                self.lines += 1;
            }
            SourceEvent::Commit { end_lsn, .. } => {
                self.txn = None;
                self.pending_end = Some(end_lsn);
            }
        }
        Ok(())
    }

    async fn sync(&mut self, durable: &watch::Sender<Lsn>) -> Result<(), JsonlError> {
        let err = |what| {
            let path = self.path.clone();
            move |error| JsonlError { path, what, error }
        };
        self.out.flush().map_err(err("flushing"))?;
        // fsync blocks; keep it off the runtime's worker threads.
        let file = self
            .out
            .get_ref()
            .try_clone()
            .map_err(err("cloning the handle"))?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| JsonlError {
                path: self.path.clone(),
                what: "syncing",
                error: std::io::Error::other(e),
            })?
            .map_err(err("syncing"))?;
        if let Some(end) = self.pending_end.take() {
            debug!(lsn = %end, bytes = self.unsynced_bytes, "jsonl durable");
            durable.send_replace(end);
        }
        self.unsynced_bytes = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// Length of the file up to and including its last newline.
fn complete_prefix(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The JSON document of one change.
pub fn line(change: &Change, xid: u32, commit_ts: PgTimestamp) -> Json {
    let table = &change.table;
    let mut unchanged = Vec::new();
    let before = change
        .before
        .as_ref()
        .map(|row| row_json(table, row, &mut Vec::new()));
    let after = change
        .after
        .as_ref()
        .map(|row| row_json(table, row, &mut unchanged));
    json!({
        "lsn": change.id.commit_lsn.to_string(),
        "seq": change.id.seq,
        "xid": xid,
        "op": change.op.letter().to_string(),
        "schema": table.schema,
        "table": table.name,
        "before": before,
        "after": after,
        "unchanged": unchanged,
        "commit_ts": pg_timestamp_text(commit_ts),
    })
}

/// Columns in order; unchanged TOAST values are left out and listed in `unchanged`.
fn row_json(table: &Table, row: &Row, unchanged: &mut Vec<String>) -> Json {
    let mut object = Map::with_capacity(row.len());
    for (column, datum) in table.columns.iter().zip(row) {
        match datum {
            Datum::Null => {
                object.insert(column.name.clone(), Json::Null);
            }
            Datum::Unchanged => unchanged.push(column.name.clone()),
            Datum::Value(v) => {
                object.insert(column.name.clone(), v.to_json());
            }
        }
    }
    Json::Object(object)
}

/// RFC 3339 UTC text of a PostgreSQL timestamp (microseconds since 2000-01-01).
pub fn pg_timestamp_text(micros: PgTimestamp) -> String {
    chrono::DateTime::from_timestamp_micros(crate::change::unix_micros(micros))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}
