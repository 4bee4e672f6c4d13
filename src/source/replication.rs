//! The capture loop: replication events in, typed transactions out, acknowledgements back.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tracing::{debug, error, info, warn};

use super::pgoutput::{self, Message, OldTuple};
use super::publication;
use super::relation::Relations;
use super::slot::{self, SlotState};
use super::snapshot::{self, Chunk, Job, Outcome, ProgressFile, TableProgress, Watermark, Windows};
use super::SourceError;
use crate::change::{Change, Datum, Op, Row, SourceEvent, Table};
use crate::config::{PgUrl, Source, TableName};

/// What the replication stream needs from the pipeline's source section.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub slot: String,
    pub publication: String,
    pub status_interval: Duration,
    /// The configured tables: a change arriving under the name of one's partition is an error.
    pub tables: Vec<TableName>,
}

impl From<&Source> for StreamSettings {
    fn from(s: &Source) -> Self {
        StreamSettings {
            slot: s.slot.clone(),
            publication: s.publication.clone(),
            status_interval: s.status_interval.0,
            tables: s.tables.iter().map(|t| t.value.clone()).collect(),
        }
    }
}
use crate::lsn::{ChangeId, Lsn};
use crate::pg;
use crate::pipeline::ack::AckTracker;
use crate::pipeline::readiness;

/// A replication session before it streams.
pub struct Opening {
    repl: ReplicationClient,
    endpoint: String,
    dsn: pg::Dsn,
    stream: StreamSettings,
}

/// A replication failure; a certificate, a server without TLS or a refused IAM token, named
/// as the plain connections name it (the session connects on its first request, so any
/// request may meet it).
fn replication_failed(
    endpoint: &str,
    dsn: &pg::Dsn,
    error: pgwire_replication::PgWireError,
) -> SourceError {
    match pg::explain(&error.to_string(), dsn) {
        Some(why) => SourceError::Connect(pg::ConnectError {
            endpoint: endpoint.to_owned(),
            why,
            transient: false,
        }),
        None => SourceError::Replication {
            endpoint: endpoint.to_owned(),
            error,
        },
    }
}

/// A slot created on an [`Opening`] session.
#[derive(Debug, Clone)]
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    /// The exported snapshot of the consistent point: a normal session reads the database
    /// exactly as of the slot's start with `SET TRANSACTION SNAPSHOT`, until the stream starts.
    pub snapshot: String,
}

impl Opening {
    /// Creates the logical slot on this session, exporting the snapshot of its consistent
    /// point.
    pub async fn create_slot(&mut self) -> Result<CreatedSlot, SourceError> {
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
            pg::quote_ident(&self.stream.slot)
        );
        let rows = self
            .repl
            .simple_query(&sql)
            .await
            .map_err(|error| replication_failed(&self.endpoint, &self.dsn, error))?;
        let field = |i: usize| -> Option<String> {
            let bytes = rows.first()?.get(i)?.as_ref()?;
            Some(String::from_utf8_lossy(bytes).into_owned())
        };
        let (Some(point), Some(snapshot)) = (field(1), field(2)) else {
            return Err(SourceError::Slot(format!(
                "CREATE_REPLICATION_SLOT {} returned no consistent point or snapshot",
                self.stream.slot
            )));
        };
        let consistent_point = point
            .parse()
            .map_err(|e| SourceError::Slot(format!("server returned a bad LSN: {e}")))?;
        info!(slot = %self.stream.slot, lsn = %consistent_point, "replication slot created");
        Ok(CreatedSlot {
            consistent_point,
            snapshot,
        })
    }

    /// Starts streaming at the slot's confirmed position (its consistent point when it was
    /// created on this session); an exported snapshot is gone from then on.
    pub async fn start(mut self, slot: SlotState, catalog: Client) -> Result<Capture, SourceError> {
        let endpoint = self.endpoint;
        let dsn = self.dsn;
        let repl_err = |error| replication_failed(&endpoint, &dsn, error);
        self.repl.start().await.map_err(repl_err)?;
        self.repl.wait_started().await.map_err(repl_err)?;
        let stream = self.stream;
        info!(slot = %stream.slot, resume_from = %slot.confirmed_flush, created = slot.created, "capture started");
        Ok(Capture {
            snapshots: None,
            repl: self.repl,
            catalog,
            relations: Relations::default(),
            ack: AckTracker::new(slot.confirmed_flush),
            slot: stream.slot,
            tables: stream.tables,
            leaves: HashMap::new(),
            endpoint,
            last_confirmed: slot.confirmed_flush,
            received: slot.confirmed_flush,
        })
    }
}

/// Why streaming stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Shutdown,
    /// The server ended the stream cleanly.
    EndOfStream,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The capture loop's end of the snapshot worker.
pub struct SnapshotLink {
    pub chunks: mpsc::Receiver<Chunk>,
    pub jobs: mpsc::Sender<Job>,
    pub progress: ProgressFile,
    /// The configured tables: signals for others are ignored.
    pub tables: Vec<TableName>,
    /// A chunk received ahead of its high watermark.
    pub ready: Option<Chunk>,
    /// The worker's run id: only watermarks carrying it are this run's.
    pub run: u64,
    /// The tables whose snapshot has not finished (its last rows durable downstream), none
    /// of them complete at any stage until it has: a first snapshot, or one resumed.
    pub running: watch::Sender<BTreeSet<String>>,
}

pub struct Capture {
    snapshots: Option<(SnapshotLink, Windows)>,
    repl: ReplicationClient,
    catalog: Client,
    relations: Relations,
    ack: AckTracker,
    slot: String,
    tables: Vec<TableName>,
    /// Per relation, the configured table it is a partition of (None: it is not one), as
    /// decided at its first change since its last Relation message.
    leaves: HashMap<u32, Option<(TableName, TableName)>>,
    endpoint: String,
    last_confirmed: Lsn,
    received: Lsn,
}

/// The transaction being received: identities of its changes are (commit LSN, sequence).
struct Txn {
    commit_lsn: Lsn,
    seq: u32,
    xid: u32,
}

impl Txn {
    fn next_id(&mut self) -> ChangeId {
        let id = ChangeId {
            commit_lsn: self.commit_lsn,
            seq: self.seq,
        };
        self.seq += 1;
        id
    }
}

impl Capture {
    /// Opens the replication stream at the slot's confirmed position; with `stop_at`, the
    /// stream ends there (benchmarks and bounded replays).
    pub async fn start(
        url: &PgUrl,
        stream: &StreamSettings,
        slot: SlotState,
        catalog: Client,
        stop_at: Option<Lsn>,
    ) -> Result<Capture, SourceError> {
        Capture::open(url, stream, Some(slot.confirmed_flush), stop_at)
            .await?
            .start(slot, catalog)
            .await
    }

    /// Opens a replication session that does not stream yet, so that a slot can be created
    /// on it ([`Opening::create_slot`]). `resume_from`: the slot's confirmed position, when
    /// it exists.
    pub async fn open(
        url: &PgUrl,
        stream: &StreamSettings,
        resume_from: Option<Lsn>,
        stop_at: Option<Lsn>,
    ) -> Result<Opening, SourceError> {
        let config = url.to_config();
        let endpoint = pg::endpoint(&config);
        let host = pg::host(&config);
        let login = config.login().await?;
        let password = login
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        // 0/0 for a slot created on the session: the server starts at its consistent point.
        let from = resume_from.unwrap_or_default();
        let repl_config = ReplicationConfig::new(
            host,
            config.get_user().unwrap_or("postgres"),
            password,
            config.get_dbname().unwrap_or("postgres"),
            stream.slot.clone(),
            stream.publication.clone(),
        )
        .with_port(config.get_ports().first().copied().unwrap_or(5432))
        .with_start_lsn(from.into())
        .with_ack_lsn(from.into())
        .with_status_interval(stream.status_interval)
        .with_options(super::session_options())
        .with_application_name(format!("freshet:{}", stream.slot))
        .with_tls(config.tls.replication());
        let repl_config = match stop_at {
            Some(lsn) => repl_config.with_stop_lsn(lsn.into()),
            None => repl_config,
        };
        let repl = ReplicationClient::connect_gated(repl_config)
            .await
            .map_err(|error| replication_failed(&endpoint, &config, error))?;
        Ok(Opening {
            repl,
            endpoint,
            dsn: config,
            stream: stream.clone(),
        })
    }

    /// Connects the snapshot worker: watermarks and signals in the stream are acted on.
    pub fn with_snapshots(mut self, link: SnapshotLink) -> Capture {
        self.snapshots = Some((link, Windows::default()));
        self
    }

    /// Streams until shutdown, the end of the stream, or an error. Priority: shutdown, then
    /// acknowledgements (they free WAL), then new events. A shutdown that comes while a
    /// transaction is being received stops after its Commit (the server sends a transaction
    /// whole, so the rest is already on its way): a stop between transactions leaves nothing
    /// half-written in the output to be written again.
    pub async fn stream(
        &mut self,
        out: &mpsc::Sender<SourceEvent>,
        durable: &mut watch::Receiver<Lsn>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Stopped, SourceError> {
        let mut txn: Option<Txn> = None;
        let mut stopping = false;
        let mut progress_at = Instant::now();
        loop {
            if progress_at.elapsed() >= Duration::from_secs(10) {
                progress_at = Instant::now();
                info!(slot = %self.slot, received = %self.received, confirmed = %self.last_confirmed,
                      in_flight = self.ack.in_flight(), "capture progress");
            }
            let event = tokio::select! {
                biased;
                _ = shutdown.changed(), if !stopping => {
                    if txn.is_none() {
                        return Ok(Stopped::Shutdown);
                    }
                    info!(slot = %self.slot, "shutdown requested: reading the open transaction to its commit");
                    stopping = true;
                    continue;
                }
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Err(SourceError::OutputGone("it stopped acknowledging".into()));
                    }
                    let lsn = *durable.borrow_and_update();
                    self.ack.durable(lsn);
                    self.confirm();
                    // Progress: what still waits, waits from now.
                    readiness::waiting((self.ack.in_flight() > 0).then(now_ms));
                    self.snapshot_durable(lsn)?;
                    continue;
                }
                event = self.repl.recv() => event,
            };
            let event = event.map_err(|error| SourceError::Replication {
                endpoint: self.endpoint.clone(),
                error,
            })?;
            let Some(event) = event else {
                return Ok(Stopped::EndOfStream);
            };
            match event {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    self.ack.keepalive(wal_end.into());
                    self.confirm();
                }
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    let commit_lsn = Lsn::from(final_lsn);
                    self.ack.begin();
                    txn = Some(Txn {
                        commit_lsn,
                        seq: 0,
                        xid,
                    });
                    send(
                        out,
                        SourceEvent::Begin {
                            xid,
                            commit_lsn,
                            commit_ts: commit_time_micros,
                        },
                    )
                    .await?;
                }
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    if let (Some(t), Some((_, windows))) = (txn.take(), &mut self.snapshots) {
                        windows.committed(t.xid, t.commit_lsn);
                    }
                    let (commit_lsn, end_lsn) = (Lsn::from(lsn), Lsn::from(end_lsn));
                    self.received = end_lsn;
                    send(
                        out,
                        SourceEvent::Commit {
                            commit_lsn,
                            end_lsn,
                            commit_ts: commit_time_micros,
                        },
                    )
                    .await?;
                    self.ack.commit(end_lsn);
                    if self.ack.in_flight() == 1 {
                        readiness::waiting(Some(now_ms()));
                    }
                    if let Some((_, windows)) = &mut self.snapshots {
                        windows.commit(end_lsn);
                    }
                    if stopping {
                        return Ok(Stopped::Shutdown);
                    }
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let message = pgoutput::decode(data).map_err(|error| SourceError::Decode {
                        lsn: wal_start.into(),
                        error,
                    })?;
                    self.apply(message, wal_start.into(), txn.as_mut(), out)
                        .await?;
                }
                // Heartbeats travel as their own transactions: their Begin and Commit above
                // are what moves the acknowledged position.
                ReplicationEvent::Message {
                    prefix,
                    lsn,
                    content,
                    ..
                } => {
                    debug!(%prefix, lsn = %Lsn::from(lsn), "logical message");
                    if prefix == snapshot::WATERMARK_PREFIX {
                        self.watermark(&content, txn.as_mut(), out).await?;
                    } else if prefix == snapshot::SIGNAL_PREFIX {
                        self.signal(&content);
                    }
                }
                ReplicationEvent::StoppedAt { .. } => return Ok(Stopped::EndOfStream),
            }
        }
    }

    async fn apply(
        &mut self,
        message: Message,
        lsn: Lsn,
        txn: Option<&mut Txn>,
        out: &mpsc::Sender<SourceEvent>,
    ) -> Result<(), SourceError> {
        let (relation, op, before, after) = match message {
            Message::Relation(rel) => {
                let table = self.relations.apply(rel, &self.catalog).await?;
                debug!(table = %format!("{}.{}", table.schema, table.name), columns = table.columns.len(), "relation");
                // Published via the root, pgoutput describes the leaf too (after the root);
                // only a change under the leaf's name is wrong. Decided again per version.
                self.leaves.remove(&table.oid);
                return Ok(());
            }
            Message::Insert { relation, new } => (relation, Op::Insert, None, Some(new)),
            Message::Update { relation, old, new } => (relation, Op::Update, old, Some(new)),
            Message::Delete { relation, old } => (relation, Op::Delete, Some(old), None),
            Message::Truncate { relations, .. } => {
                let txn = txn.ok_or_else(|| {
                    SourceError::Protocol("TRUNCATE outside a transaction".into())
                })?;
                for oid in relations {
                    self.ensure_not_a_leaf(oid).await?;
                    let table = self.relations.table(oid)?.clone();
                    let id = txn.next_id();
                    let change = Change {
                        id,
                        lsn,
                        op: Op::Truncate,
                        table,
                        before: None,
                        after: None,
                    };
                    self.note_window_change(&change);
                    send(out, SourceEvent::Change(change)).await?;
                }
                return Ok(());
            }
            Message::Type { .. }
            | Message::Origin { .. }
            | Message::Message { .. }
            | Message::Begin { .. }
            | Message::Commit { .. } => return Ok(()),
        };
        let txn = txn.ok_or_else(|| {
            SourceError::Protocol(format!(
                "change for relation {relation} outside a transaction"
            ))
        })?;
        self.ensure_not_a_leaf(relation).await?;
        let table = self.relations.table(relation)?.clone();
        let before = match before {
            Some(OldTuple::Key(t) | OldTuple::Full(t)) => Some(self.relations.row(relation, &t)?),
            None => None,
        };
        let mut after = match after {
            Some(t) => Some(self.relations.row(relation, &t)?),
            None => None,
        };
        if let Some(after) = &mut after {
            fill_unchanged_key(&table, before.as_ref(), after)?;
        }
        let id = txn.next_id();
        let change = Change {
            id,
            lsn,
            op,
            table,
            before,
            after,
        };
        self.note_window_change(&change);
        send(out, SourceEvent::Change(change)).await
    }

    /// Refuses a change arriving under the name of a configured table's partition: it would
    /// pass downstream as an unknown table's and be dropped while its commit is confirmed.
    async fn ensure_not_a_leaf(&mut self, oid: u32) -> Result<(), SourceError> {
        if !self.leaves.contains_key(&oid) {
            let table = self.relations.table(oid)?;
            let name = TableName {
                schema: table.schema.clone(),
                table: table.name.clone(),
            };
            // An empty list (benchmarks) captures whatever the publication sends.
            let root = if self.tables.is_empty() || self.tables.contains(&name) {
                None
            } else {
                publication::configured_root(&self.catalog, oid, &self.tables)
                    .await?
                    .map(|root| (name, root))
            };
            self.leaves.insert(oid, root);
        }
        match self.leaves.get(&oid) {
            Some(Some((leaf, root))) => Err(SourceError::LeafPartition {
                leaf: leaf.to_string(),
                root: root.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// A change to the table of the open snapshot window: its keys leave the chunk (a
    /// TRUNCATE takes them all).
    fn note_window_change(&mut self, change: &Change) {
        let Some((link, windows)) = &mut self.snapshots else {
            return;
        };
        // A worker that died after its low watermark leaves a window nobody will close.
        if link.chunks.is_closed() && link.ready.is_none() {
            windows.close();
            return;
        }
        let Some((table, key)) = windows.watching() else {
            return;
        };
        let name = TableName {
            schema: change.table.schema.clone(),
            table: change.table.name.clone(),
        };
        if name.to_string() != table {
            return;
        }
        if change.op == Op::Truncate {
            windows.truncated();
            return;
        }
        let positions: Option<Vec<usize>> = key
            .iter()
            .map(|k| change.table.columns.iter().position(|c| &c.name == k))
            .collect();
        let Some(positions) = positions else { return };
        let keys: Vec<String> = [&change.before, &change.after]
            .into_iter()
            .flatten()
            .filter_map(|row| {
                let parts: Option<Vec<String>> = positions
                    .iter()
                    .map(|&i| match row.get(i) {
                        Some(Datum::Value(v)) => Some(v.to_pg_text()),
                        _ => None,
                    })
                    .collect();
                parts.map(|p| snapshot::key_text(p.iter().map(String::as_str)))
            })
            .collect();
        for k in keys {
            windows.changed(k);
        }
    }

    async fn watermark(
        &mut self,
        content: &[u8],
        txn: Option<&mut Txn>,
        out: &mpsc::Sender<SourceEvent>,
    ) -> Result<(), SourceError> {
        let Some((link, windows)) = &mut self.snapshots else {
            return Ok(());
        };
        let mark: Watermark = match serde_json::from_slice(content) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "ignoring a malformed snapshot watermark");
                return Ok(());
            }
        };
        // Every slot of the database sees every watermark, and a restart replays earlier
        // runs' ones: act on this run's worker's only. Anything else (another pipeline's, an
        // earlier run's, one written by hand) is noted and ignored, never fatal: it stays in
        // the WAL and would be read again at every start.
        if mark.slot != self.slot || mark.run != link.run {
            debug!(slot = %mark.slot, run = mark.run, chunk = mark.chunk, "watermark of another run or pipeline ignored");
            return Ok(());
        }
        let Some(txn) = txn else {
            warn!(chunk = mark.chunk, "ignoring a snapshot watermark written outside a transaction (Freshet writes them transactionally)");
            return Ok(());
        };
        if !mark.high {
            windows.low(mark, txn.commit_lsn);
            return Ok(());
        }
        let Some(changed) = windows.high(mark.chunk) else {
            return Ok(());
        };
        // The worker hands a chunk over before it writes its high watermark. A replayed high
        // watermark of an earlier run finds no chunk of its id, and must not take this run's.
        if link.ready.is_none() {
            link.ready = link.chunks.try_recv().ok();
        }
        let Some(chunk) = link.ready.take_if(|c| c.id == mark.chunk) else {
            debug!(
                chunk = mark.chunk,
                "high watermark of a chunk from an earlier run"
            );
            return Ok(());
        };
        if windows.stale(&chunk.invisible) {
            let _ = chunk.emitted.send(Outcome::Retry);
            return Ok(());
        }
        let table = self
            .relations
            .for_snapshot(chunk.relation.clone(), &self.catalog)
            .await?;
        let mut emitted = 0u64;
        for (key, texts) in &chunk.rows {
            if changed.contains(key) {
                continue;
            }
            let row = Relations::row_from_texts(&table, texts)?;
            let id = txn.next_id();
            send(
                out,
                SourceEvent::Change(Change {
                    id,
                    lsn: txn.commit_lsn,
                    op: Op::Read,
                    table: table.clone(),
                    before: None,
                    after: Some(row),
                }),
            )
            .await?;
            emitted += 1;
        }
        let key = chunk.table.to_string();
        let Some((link, windows)) = self.snapshots.as_mut() else {
            return Ok(());
        };
        let complete_once = link
            .progress
            .progress
            .tables
            .get(&key)
            .is_some_and(TableProgress::ever_complete);
        windows.emitted_in_txn(
            key,
            TableProgress {
                after_key: chunk.next_key.clone(),
                done: chunk.last,
                rows: chunk.rows_read,
                complete_once,
            },
        );
        debug!(
            chunk = chunk.id,
            emitted,
            dropped = chunk.rows.len() as u64 - emitted,
            "snapshot chunk emitted"
        );
        let _ = chunk.emitted.send(Outcome::Emitted);
        Ok(())
    }

    /// A `freshet snapshot` request. Never waits: a full job queue drops the request with an
    /// error in the log rather than stall the stream (and with it every acknowledgement).
    fn signal(&mut self, content: &[u8]) {
        let Some((link, _)) = &mut self.snapshots else {
            return;
        };
        let signal = match serde_json::from_slice::<snapshot::Signal>(content) {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "ignoring a malformed snapshot signal"),
        };
        if signal.slot != self.slot {
            return;
        }
        match TableName::parse(&signal.snapshot) {
            Ok(table) if link.tables.contains(&table) => {
                let job = Job {
                    table: table.clone(),
                    after_key: None,
                    rows_read: 0,
                };
                // A table snapshotted before has all its changes already: the new reads
                // only repeat rows. One never snapshotted is incomplete until this one ends.
                let done_before = link
                    .progress
                    .progress
                    .tables
                    .get(&table.to_string())
                    .is_some_and(TableProgress::ever_complete);
                match link.jobs.try_send(job) {
                    Ok(()) => {
                        if !done_before {
                            link.running.send_modify(|r| {
                                r.insert(table.to_string());
                            });
                        }
                        info!(%table, "snapshot requested by signal")
                    }
                    Err(e) => {
                        error!(%table, error = %e, "snapshot request dropped: the snapshot worker is gone or its queue is full")
                    }
                }
            }
            Ok(table) => {
                warn!(%table, "snapshot signal for a table this pipeline does not capture")
            }
            Err(e) => warn!(error = %e, "ignoring a malformed snapshot signal"),
        }
    }

    /// Saves snapshot progress whose `r` events are now durable.
    fn snapshot_durable(&mut self, durable: Lsn) -> Result<(), SourceError> {
        let Some((link, windows)) = &mut self.snapshots else {
            return Ok(());
        };
        let done = windows.durable(durable);
        if done.is_empty() {
            return Ok(());
        }
        let mut finished = Vec::new();
        for (table, progress) in done {
            if progress.done {
                finished.push(table.clone());
            }
            link.progress.progress.tables.insert(table, progress);
        }
        link.progress.save()?;
        if !finished.is_empty() {
            link.running.send_modify(|r| {
                for t in &finished {
                    r.remove(t);
                }
            });
        }
        Ok(())
    }

    fn confirm(&mut self) {
        let lsn = self.ack.confirmable();
        if lsn > self.last_confirmed {
            self.last_confirmed = lsn;
            self.repl.update_applied_lsn(lsn.into());
        }
    }

    /// Ends the stream after the output finished: takes its last durable position, confirms
    /// it, closes the stream and makes sure the slot carries it. Returns that position.
    pub async fn finish(mut self, durable: Lsn) -> Result<Lsn, SourceError> {
        self.ack.durable(durable);
        self.confirm();
        self.snapshot_durable(durable)?;
        let confirmed = self.last_confirmed;
        self.repl.stop();
        let _ = self.repl.shutdown().await;
        slot::advance(&self.catalog, &self.slot, confirmed).await?;
        info!(slot = %self.slot, %confirmed, "capture stopped, position confirmed");
        Ok(confirmed)
    }
}

/// A TOASTed identity column an update left alone arrives as unchanged: the key of the row
/// would be unknown (a Kafka key with a marker lands on another partition; a snapshot window
/// cannot drop the row). Its value is the old tuple's, which REPLICA IDENTITY FULL carries
/// inline; without it, capture stops naming the table rather than emit a row without a key.
fn fill_unchanged_key(
    table: &Table,
    before: Option<&Row>,
    after: &mut Row,
) -> Result<(), SourceError> {
    for (i, column) in table.columns.iter().enumerate() {
        if !column.key || !matches!(after.get(i), Some(Datum::Unchanged)) {
            continue;
        }
        match before.and_then(|b| b.get(i)) {
            Some(old @ (Datum::Value(_) | Datum::Null)) => after[i] = old.clone(),
            _ => {
                return Err(SourceError::UnchangedKey {
                    table: format!("{}.{}", table.schema, table.name),
                    column: column.name.clone(),
                })
            }
        }
    }
    Ok(())
}

async fn send(out: &mpsc::Sender<SourceEvent>, event: SourceEvent) -> Result<(), SourceError> {
    out.send(event)
        .await
        .map_err(|_| SourceError::OutputGone("its channel closed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Column, TypeInfo, TypeKind, Value};
    use crate::source::value::oid;

    fn table() -> Table {
        let column = |name: &str, key| Column {
            name: name.into(),
            type_oid: oid::TEXT,
            type_modifier: -1,
            ty: TypeInfo {
                oid: oid::TEXT,
                kind: TypeKind::Scalar,
            },
            key,
            nullable: !key,
        };
        Table {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            replica_identity: b'd',
            columns: vec![column("k", true), column("big", false)],
        }
    }

    fn text(s: &str) -> Datum {
        Datum::Value(Value::Text(s.into()))
    }

    #[test]
    fn an_unchanged_key_is_taken_from_the_old_row_and_refused_without_one() {
        let t = table();
        let mut after = vec![Datum::Unchanged, Datum::Unchanged];
        let old_key = vec![text("key"), Datum::Null];
        fill_unchanged_key(&t, Some(&old_key), &mut after).unwrap();
        assert_eq!(
            after,
            [text("key"), Datum::Unchanged],
            "only the key is filled"
        );

        let mut after = vec![Datum::Unchanged, text("new")];
        let e = fill_unchanged_key(&t, None, &mut after).unwrap_err();
        assert!(
            e.to_string()
                .contains("public.t left its key column k stored out of line")
                && e.to_string().contains("REPLICA IDENTITY FULL"),
            "{e}"
        );
    }
}
