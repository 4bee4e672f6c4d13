//! Watermark-based chunked snapshots (DBLog, as Debezium's incremental snapshots do it).
//!
//! Per chunk the worker writes a low watermark into the WAL, selects the next primary-key
//! range, hands the rows to the capture loop and writes a high watermark. In the stream, the
//! capture loop notes every key of the table changed between the two watermarks; at the high
//! watermark it emits the chunk's other rows as `r` events inside that transaction. A key
//! changed in the window is left out: the stream already carries a newer version of it. No
//! transaction stays open on the primary, streaming never pauses, and after a crash the
//! worker resumes after the last chunk whose `r` events were durable.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, SimpleQueryMessage};
use tracing::{debug, error, info};

use super::pgoutput::{Relation, RelationColumn};
use super::SourceError;
use crate::config::TableName;
use crate::lsn::Lsn;
use crate::pg;
use crate::pg::quote_ident;
use crate::state;

/// Prefix of the watermark messages; the content says which chunk and which mark.
pub const WATERMARK_PREFIX: &str = "freshet.snapshot";
/// The pause before a stale chunk is read again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Prefix of signals written by `freshet snapshot`: `{"snapshot": "schema.table"}`.
pub const SIGNAL_PREFIX: &str = "freshet.signal";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Watermark {
    /// The run of the worker that wrote it (see [`run_id`]); 0 in marks of older versions.
    #[serde(default)]
    pub run: u64,
    pub chunk: u64,
    pub high: bool,
    /// The table and its key columns, so the capture loop knows which changes fall in the
    /// window without having seen the chunk yet.
    pub table: String,
    pub key: Vec<String>,
    /// The slot whose pipeline wrote it: other slots on the database see it too.
    pub slot: String,
    /// Set in the capture loop when the table is truncated inside the window.
    #[serde(skip)]
    pub truncated: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signal {
    pub snapshot: String,
    pub slot: String,
}

/// One selected chunk, rows in their text form as the stream would carry them.
#[derive(Debug)]
pub struct Chunk {
    pub id: u64,
    pub table: TableName,
    /// The table's shape when the chunk was read, from the catalog in the chunk's own
    /// transaction (the stream's last Relation message may predate an ADD or DROP COLUMN).
    pub relation: Relation,
    /// Each row's key (its key columns' text joined), and its column texts in the
    /// relation's column order.
    pub rows: Vec<(String, Vec<Option<String>>)>,
    /// The cursor after this chunk, and whether it was the table's last chunk.
    pub next_key: Option<Vec<String>>,
    pub last: bool,
    /// Rows of the table read so far, this chunk included.
    pub rows_read: u64,
    /// Transactions the chunk's SELECT did not see.
    pub invisible: Invisible,
    /// Told when the capture loop passed the chunk's high watermark, so one chunk is in flight.
    pub emitted: oneshot::Sender<Outcome>,
}

/// What became of a chunk at its high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Emitted,
    /// A transaction whose commit precedes the low watermark in the WAL was still invisible
    /// to the SELECT (PostgreSQL writes the commit record before it makes the transaction
    /// visible): the chunk may be stale, so it is read again.
    Retry,
}

/// Snapshot progress per table, persisted after each chunk is durable downstream.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub tables: BTreeMap<String, TableProgress>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableProgress {
    /// Key after which the next chunk starts; None: from the beginning.
    pub after_key: Option<Vec<String>>,
    pub done: bool,
    pub rows: u64,
    /// A snapshot of the table (this one or an earlier) has ended: all its rows were
    /// delivered once, so a later one only repeats them and holds no watermark back.
    #[serde(default)]
    pub complete_once: bool,
}

impl TableProgress {
    /// Whether every row of the table was delivered once.
    pub fn ever_complete(&self) -> bool {
        self.done || self.complete_once
    }
}

/// The progress file, replaced atomically (see [`crate::state`]).
pub struct ProgressFile {
    path: PathBuf,
    pub progress: Progress,
}

impl ProgressFile {
    pub fn open(path: &Path) -> Result<ProgressFile, SourceError> {
        Ok(ProgressFile {
            path: path.to_path_buf(),
            progress: state::read(path)?.unwrap_or_default(),
        })
    }

    pub fn save(&self) -> Result<(), SourceError> {
        Ok(state::write(&self.path, &self.progress)?)
    }
}

/// A request to the worker: snapshot this table from this key.
#[derive(Debug, Clone)]
pub struct Job {
    pub table: TableName,
    pub after_key: Option<Vec<String>>,
    /// Rows read by earlier runs of this job (a resumed snapshot).
    pub rows_read: u64,
}

/// Runs snapshot jobs one chunk at a time. It never holds a transaction open across chunks:
/// each statement is its own short transaction.
pub async fn worker(
    config: crate::pg::Dsn,
    slot: String,
    run: u64,
    chunk_rows: u32,
    mut jobs: mpsc::Receiver<Job>,
    chunks: mpsc::Sender<Chunk>,
) -> Result<(), SourceError> {
    let client = pg::connect(&config).await?;
    client
        .batch_execute(&super::session_set_sql())
        .await
        .map_err(|error| SourceError::Catalog {
            what: "preparing the snapshot session".into(),
            error,
        })?;
    // Unique within the run; the run id tells runs apart.
    let mut next_chunk: u64 = 1;
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        let job = match queue.pop_front() {
            Some(j) => j,
            None => match jobs.recv().await {
                Some(j) => j,
                None => return Ok(()),
            },
        };
        let key = primary_key(&client, &job.table).await?;
        if !exists(&client, &job.table).await? {
            error!(table = %job.table, "snapshot skipped: the table does not exist");
            continue;
        }
        if key.is_empty() || !keyed_identity(&client, &job.table).await? {
            // Chunks are key ranges, and a change's key must be known to drop it from its
            // chunk: that needs a primary key and an identity that logs it (DEFAULT or FULL).
            error!(table = %job.table, "snapshot skipped: it needs a primary key and REPLICA IDENTITY DEFAULT or FULL");
            continue;
        }
        info!(table = %job.table, resume_after = ?job.after_key, "snapshot started");
        let started = std::time::Instant::now();
        let mut after = job.after_key.clone();
        let mut rows_done: u64 = 0;
        loop {
            // New jobs queue behind the running one.
            while let Ok(j) = jobs.try_recv() {
                queue.push_back(j);
            }
            let id = next_chunk;
            next_chunk += 1;
            let mark = |high| Watermark {
                run,
                slot: slot.clone(),
                truncated: false,
                chunk: id,
                high,
                table: job.table.to_string(),
                key: key.clone(),
            };
            emit(&client, &mark(false)).await?;
            let (invisible, relation, rows) =
                read_chunk(&client, &job.table, &key, after.as_deref(), chunk_rows).await?;
            let last = rows.len() < chunk_rows as usize;
            let next_key = rows.last().map(|(k, _)| k.1.clone()).or(after.clone());
            let count = rows.len() as u64;
            let (emitted, done) = oneshot::channel();
            let chunk = Chunk {
                id,
                table: job.table.clone(),
                relation,
                rows: rows.into_iter().map(|((k, _), r)| (k, r)).collect(),
                next_key: next_key.clone(),
                last,
                rows_read: job.rows_read + rows_done + count,
                invisible,
                emitted,
            };
            if chunks.send(chunk).await.is_err() {
                return Ok(());
            }
            emit(&client, &mark(true)).await?;
            // One chunk in flight: wait until the capture loop has passed its high watermark.
            match done.await {
                Err(_) => return Ok(()),
                Ok(Outcome::Emitted) => {}
                Ok(Outcome::Retry) => {
                    debug!(table = %job.table, chunk = id, "chunk read again: a transaction committed before its low watermark was not yet visible to it");
                    // Such a transaction becomes visible in milliseconds, unless it waits
                    // for a synchronous standby: then do not spin.
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
            rows_done += count;
            let rate = rows_done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            info!(table = %job.table, rows = rows_done, rows_per_sec = format!("{rate:.0}"), "snapshot progress");
            after = next_key;
            if last {
                info!(table = %job.table, rows = rows_done, seconds = started.elapsed().as_secs(), "snapshot finished");
                break;
            }
        }
    }
}

/// An id for one run of the capture and its worker: watermarks in the WAL that carry another
/// (earlier runs', replayed after a restart) are not this run's. Never 0.
pub fn run_id() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    (micros ^ (u64::from(std::process::id()) << 40)) | 1
}

async fn emit(client: &Client, mark: &Watermark) -> Result<(), SourceError> {
    let content = serde_json::to_string(mark).map_err(|e| SourceError::Snapshot(e.to_string()))?;
    client
        .execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&WATERMARK_PREFIX, &content],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: "writing a snapshot watermark".into(),
            error,
        })?;
    Ok(())
}

/// Writes a signal asking running (or future) captures to snapshot `table` again.
pub async fn signal(client: &Client, slot: &str, table: &TableName) -> Result<Lsn, SourceError> {
    let content = serde_json::to_string(&Signal {
        snapshot: table.to_string(),
        slot: slot.to_string(),
    })
    .map_err(|e| SourceError::Snapshot(e.to_string()))?;
    let row = client
        .query_one(
            "SELECT pg_logical_emit_message(true, $1, $2)::text",
            &[&SIGNAL_PREFIX, &content],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: "writing the snapshot signal".into(),
            error,
        })?;
    row.get::<_, String>(0)
        .parse()
        .map_err(|e| SourceError::Snapshot(format!("{e}")))
}

async fn primary_key(client: &Client, table: &TableName) -> Result<Vec<String>, SourceError> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary ORDER BY k.ord",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: format!("reading the primary key of {table}"),
            error,
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn keyed_identity(client: &Client, table: &TableName) -> Result<bool, SourceError> {
    let row = client
        .query_opt(
            "SELECT c.relreplident IN ('d', 'f') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|error| SourceError::Catalog { what: format!("reading the replica identity of {table}"), error })?;
    Ok(row.is_some_and(|r| r.get(0)))
}

async fn exists(client: &Client, table: &TableName) -> Result<bool, SourceError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: format!("looking up {table}"),
            error,
        })?;
    Ok(row.is_some())
}

/// The table's columns as a Relation message would describe them (key flags per its
/// REPLICA IDENTITY, generated columns left out as pgoutput does), with the transaction's
/// snapshot in every row.
const SHAPE_SQL: &str = "
    SELECT pg_current_snapshot()::text, c.oid::int8, c.relreplident::text, a.attname::text,
           a.atttypid::int8, a.atttypmod,
           CASE c.relreplident
             WHEN 'f' THEN true
             WHEN 'd' THEN coalesce(a.attnum = ANY (pk.indkey), false)
             WHEN 'i' THEN coalesce(a.attnum = ANY (ri.indkey), false)
             ELSE false END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attgenerated = ''
    LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
    LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
    WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum";

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Key text used to match chunk rows with streamed changes.
pub fn key_text<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts.into_iter().collect::<Vec<_>>().join("\u{1f}")
}

type KeyedRow = ((String, Vec<String>), Vec<Option<String>>);

/// The transactions a snapshot (`pg_current_snapshot()`) cannot see: those in progress when
/// it was taken (`xip`) and every one at or above its `xmax`, which includes a transaction
/// whose commit record is already in the WAL but which is not yet visible (PostgreSQL writes
/// the commit record first; under group commit the xid can be above the snapshot's xmax).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invisible {
    /// The low 32 bits of xmax: the stream carries 32-bit xids.
    xmax: u32,
    xip: HashSet<u32>,
}

impl Invisible {
    /// Reads `xmin:xmax:xip,…` (xid8 values; the epoch in the high bits is dropped).
    pub fn parse(text: &str) -> Option<Invisible> {
        let mut parts = text.trim().split(':');
        let (_xmin, xmax, xip) = (parts.next()?, parts.next()?, parts.next()?);
        let xid = |x: &str| x.trim().parse::<u64>().ok().map(|x| x as u32);
        Some(Invisible {
            xmax: xid(xmax)?,
            xip: xip
                .split(',')
                .filter(|x| !x.is_empty())
                .map(xid)
                .collect::<Option<_>>()?,
        })
    }

    pub fn contains(&self, xid: u32) -> bool {
        // xids compare modulo 2^32, as PostgreSQL's TransactionIdFollowsOrEquals does.
        self.xip.contains(&xid) || (xid.wrapping_sub(self.xmax) as i32) >= 0
    }
}

/// The next `limit` rows after `after` in key order, every column as its text output, read
/// in one short REPEATABLE READ transaction together with its snapshot and the table's shape.
/// The table is locked (ACCESS SHARE, as any SELECT does) before the shape is read, so no DDL
/// can land between the shape and the rows.
pub async fn read_chunk(
    client: &Client,
    table: &TableName,
    key: &[String],
    after: Option<&[String]>,
    limit: u32,
) -> Result<(Invisible, Relation, Vec<KeyedRow>), SourceError> {
    let catalog = |error| SourceError::Catalog {
        what: format!("selecting a snapshot chunk of {table}"),
        error,
    };
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE {table} IN ACCESS SHARE MODE"
        ))
        .await
        .map_err(catalog)?;
    let shape = client
        .query(SHAPE_SQL, &[&table.schema, &table.table])
        .await
        .map_err(catalog)?;
    let Some(first) = shape.first() else {
        return Err(SourceError::Snapshot(format!(
            "table {table} has no columns"
        )));
    };
    let text: String = first.get(0);
    let invisible = Invisible::parse(&text)
        .ok_or_else(|| SourceError::Snapshot(format!("pg_current_snapshot() returned {text:?}")))?;
    let relation = Relation {
        oid: first.get::<_, i64>(1) as u32,
        namespace: table.schema.clone(),
        name: table.table.clone(),
        replica_identity: first.get::<_, String>(2).bytes().next().unwrap_or(b'd'),
        columns: shape
            .iter()
            .map(|r| RelationColumn {
                flags: u8::from(r.get::<_, bool>(6)),
                name: r.get(3),
                type_oid: r.get::<_, i64>(4) as u32,
                type_modifier: r.get(5),
            })
            .collect(),
    };
    let names: Vec<String> = relation.columns.iter().map(|c| c.name.clone()).collect();
    // Values come back in their text output form, exactly what pgoutput sends (no `::text`
    // casts: bool's cast says "true", its output says "t"). Key columns are selected twice,
    // first for the cursor; names are qualified so ORDER BY binds to the table's columns.
    let qualify = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("snap.{}", quote_ident(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (key_list, select) = (qualify(key), qualify(&names));
    // A row comparison on the key columns; the server casts each literal to its column's type.
    let filter = match after {
        Some(values) => {
            let lits = values
                .iter()
                .map(|v| literal(v))
                .collect::<Vec<_>>()
                .join(", ");
            format!("WHERE ({key_list}) > ({lits})")
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {key_list}, {select} FROM {table} AS snap {filter} ORDER BY {key_list} LIMIT {limit}; COMMIT"
    );
    let messages = client.simple_query(&sql).await.map_err(catalog)?;
    let mut out = Vec::new();
    for m in messages {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        let key_values: Vec<String> = (0..key.len())
            .map(|i| row.get(i).unwrap_or_default().to_string())
            .collect();
        let values: Vec<Option<String>> = (0..names.len())
            .map(|i| row.get(key.len() + i).map(str::to_string))
            .collect();
        let k = key_text(key_values.iter().map(String::as_str));
        out.push(((k, key_values), values));
    }
    Ok((invisible, relation, out))
}

/// What changed in a window: these keys, or everything (a TRUNCATE).
pub struct Changed {
    keys: HashSet<String>,
    all: bool,
}

impl Changed {
    pub fn contains(&self, key: &str) -> bool {
        self.all || self.keys.contains(key)
    }
}

/// Commits remembered for [`Changed::stale`]: the race it guards is between a commit record
/// and that transaction becoming visible, a matter of milliseconds, so recent ones suffice.
const RECENT_COMMITS: usize = 65_536;

/// The capture loop's side: open windows between watermarks, keys changed in them, and
/// chunks whose `r` events await durability before their progress is saved.
#[derive(Default)]
pub struct Windows {
    /// The open window: its low watermark, and the keys changed since.
    open: Option<(Watermark, HashSet<String>)>,
    /// Commit position of the open window's low watermark.
    low_lsn: Lsn,
    /// Recent commits, (xid, commit LSN), oldest first.
    recent: VecDeque<(u32, Lsn)>,
    /// (commit end of the high-watermark transaction, table, progress after it).
    pending: VecDeque<(Lsn, String, TableProgress)>,
    /// Progress of the high watermark in the current transaction, until its Commit.
    in_txn: Option<(String, TableProgress)>,
}

impl Windows {
    pub fn low(&mut self, mark: Watermark, commit_lsn: Lsn) {
        self.open = Some((mark, HashSet::new()));
        self.low_lsn = commit_lsn;
    }

    /// Whether a transaction the chunk's SELECT could not see committed before the last low
    /// watermark: its changes precede the window, so they are in neither the window nor the
    /// chunk, and the chunk's rows may be older than the stream.
    pub fn stale(&self, invisible: &Invisible) -> bool {
        self.recent
            .iter()
            .any(|(xid, lsn)| *lsn < self.low_lsn && invisible.contains(*xid))
    }

    pub fn committed(&mut self, xid: u32, commit_lsn: Lsn) {
        if self.recent.len() == RECENT_COMMITS {
            self.recent.pop_front();
        }
        self.recent.push_back((xid, commit_lsn));
    }

    /// The table (as `schema.table` text) and key columns of the open window.
    pub fn watching(&self) -> Option<(&str, &[String])> {
        self.open
            .as_ref()
            .map(|(m, _)| (m.table.as_str(), m.key.as_slice()))
    }

    pub fn changed(&mut self, key: String) {
        if let Some((_, keys)) = &mut self.open {
            keys.insert(key);
        }
    }

    /// The table was truncated inside the window: none of the chunk's rows exist any more.
    pub fn truncated(&mut self) {
        if let Some((mark, keys)) = &mut self.open {
            mark.truncated = true;
            keys.clear();
        }
    }

    pub fn close(&mut self) {
        self.open = None;
    }

    /// Closes the window of `chunk`, returning what changed in it (None: no window for this
    /// chunk was seen, e.g. its low watermark predates the resume position).
    pub fn high(&mut self, chunk: u64) -> Option<Changed> {
        match self.open.take() {
            Some((mark, keys)) if mark.chunk == chunk => Some(Changed {
                keys,
                all: mark.truncated,
            }),
            other => {
                self.open = other;
                None
            }
        }
    }

    pub fn emitted_in_txn(&mut self, table: String, progress: TableProgress) {
        self.in_txn = Some((table, progress));
    }

    pub fn commit(&mut self, end_lsn: Lsn) {
        if let Some((table, progress)) = self.in_txn.take() {
            self.pending.push_back((end_lsn, table, progress));
        }
    }

    /// Progress made durable by `durable`, oldest first.
    pub fn durable(&mut self, durable: Lsn) -> Vec<(String, TableProgress)> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|(l, _, _)| *l <= durable) {
            if let Some((_, t, p)) = self.pending.pop_front() {
                out.push((t, p));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(chunk: u64) -> Watermark {
        Watermark {
            run: 1,
            chunk,
            high: false,
            table: "public.t".into(),
            key: vec!["id".into()],
            slot: "s".into(),
            truncated: false,
        }
    }

    fn invisible(text: &str) -> Invisible {
        Invisible::parse(text).expect(text)
    }

    #[test]
    fn invisible_covers_the_in_progress_list_and_everything_from_xmax() {
        let i = invisible("100:105:100,102");
        assert!(i.contains(100) && i.contains(102));
        assert!(!i.contains(101) && !i.contains(104) && !i.contains(99));
        assert!(i.contains(105) && i.contains(106), "at or above xmax");
        assert!(invisible("100:100:").contains(100));
        // xid8 values carry the epoch in the high bits; the stream carries the low 32.
        let i = invisible("4294967396:4294967400:4294967397");
        assert!(i.contains(101) && i.contains(104) && !i.contains(100));
        // Around wraparound, "above xmax" is modulo 2^32.
        let i = invisible("4294967290:4294967295:");
        assert!(i.contains(u32::MAX) && i.contains(3) && !i.contains(4294967294));
        assert_eq!(Invisible::parse("garbage"), None);
    }

    #[test]
    fn a_chunk_is_stale_when_an_invisible_transaction_committed_before_the_low_watermark() {
        let mut w = Windows::default();
        w.committed(7, Lsn(100));
        w.committed(12, Lsn(150));
        w.low(mark(1), Lsn(200));
        w.committed(8, Lsn(300));
        assert!(
            w.stale(&invisible("5:10:7")),
            "xid 7 committed at 100, before the low watermark at 200"
        );
        assert!(
            w.stale(&invisible("5:10:")),
            "xid 12 is at or above xmax 10 and committed before the low watermark"
        );
        assert!(
            !w.stale(&invisible("5:13:8")),
            "xid 8 committed inside the window: its keys are dropped instead"
        );
        assert!(!w.stale(&invisible("5:13:9")));
    }

    #[test]
    fn window_keys_and_truncate() {
        let mut w = Windows::default();
        w.low(mark(1), Lsn(10));
        w.changed("5".into());
        let changed = w.high(1).expect("window of chunk 1");
        assert!(changed.contains("5") && !changed.contains("6"));
        assert!(w.high(1).is_none(), "closed");
        w.low(mark(2), Lsn(20));
        w.truncated();
        assert!(w.high(2).expect("window of chunk 2").contains("anything"));
        w.low(mark(3), Lsn(30));
        assert!(
            w.high(4).is_none(),
            "a high watermark of another chunk leaves the window open"
        );
        assert!(w.high(3).is_some());
    }
}
