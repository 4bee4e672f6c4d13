//! The loader: lake objects into the warehouse, exactly once in effect.
//!
//! Per table, pending objects are loaded in batches, each in one warehouse transaction:
//! COPY into staging, the newest change per key merged into the change table (or, for a
//! table without a key, each change's row deltas added), and the objects' (partition,
//! offsets) written into the ledger. The ledger is the loader's position: on start it reads
//! it and loads only what it does not cover; a reloaded object, or one overlapping a loaded
//! one, changes nothing (see [`sql`]).
//!
//! A table whose change the warehouse cannot follow (a column's type changed) stops alone;
//! an unreadable object is skipped and named; a warehouse that does not answer is waited
//! for, with `stalled` and `recovered` events, the objects staying in the lake meanwhile.

mod copy;
mod oversized;
pub mod postgres;
pub mod redshift;
pub mod sql;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parquet::file::reader::{FileReader, SerializedFileReader};
use tokio::sync::{mpsc, watch};
use tracing::{info, Instrument as _};

use crate::batcher::columns::{Description, DESCRIPTION_KEY};
use crate::batcher::layout::{self, Span};
use crate::batcher::{Progress, Share, Written};
use crate::config::{Pipeline, WarehouseDriver};
use crate::freshness::{self, Stage, Watermark};
use crate::store::{Store, StoreError};
use crate::telemetry::{self, names, Event};
use postgres::Postgres;
use redshift::RedshiftData;
use sql::{Column, Dialect};

/// At most this many objects, or bytes of them, per load (Redshift: each object is one COPY
/// of the at most 40 statements of one batch).
const MAX_OBJECTS: usize = 25;
const MAX_BYTES: u64 = 256 << 20;
/// How often a table's tombstones past retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Waits between attempts while the warehouse does not answer.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the loaded watermarks are recorded in the warehouse, at most: each second in
/// PostgreSQL, each five in Redshift (a Data API batch takes seconds).
fn save_watermarks_every(d: Dialect) -> Duration {
    match d {
        Dialect::Postgres => Duration::from_secs(1),
        Dialect::Redshift => Duration::from_secs(5),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("warehouse {endpoint}: {error}\n  in: {statement}")]
    Warehouse {
        endpoint: String,
        /// The statement that failed (shortened), or what the driver was doing.
        statement: String,
        error: String,
        transient: bool,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lake object {key}: {why}")]
    Object { key: String, why: String },
    /// A change the warehouse table cannot follow.
    #[error("{table}: column {column}: {why}")]
    Column {
        table: String,
        column: String,
        why: String,
    },
    #[error("{0}")]
    Config(String),
}

impl LoaderError {
    pub fn is_transient(&self) -> bool {
        match self {
            LoaderError::Warehouse { transient, .. } => *transient,
            LoaderError::Store(s) => s.is_transient(),
            LoaderError::Object { .. } | LoaderError::Column { .. } | LoaderError::Config(_) => {
                false
            }
        }
    }
}

/// One table as the loader handles it.
#[derive(Clone, Debug)]
pub struct TableSettings {
    /// `schema.table` at the source.
    pub source: String,
    /// The table's directory in the lake.
    pub dir: String,
    /// The warehouse's view (and change table) name.
    pub name: String,
    /// How long after its oldest change's commit an object is loaded at the latest: a third
    /// of the table's freshness budget (the batcher closes its files within a quarter).
    pub cadence: Duration,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub tables: Vec<TableSettings>,
    pub schema: String,
    pub share: Option<Share>,
    pub tombstone_retention: Duration,
    /// The warehouse's longest text in bytes, if it has one: longer values are cut (see
    /// [`oversized`]).
    pub text_bytes: Option<usize>,
    /// The most statements one load may take, if the driver has a limit (Redshift's batch).
    pub max_statements: Option<usize>,
    pub dialect: Dialect,
}

impl Settings {
    /// `None` without a `warehouse` section; an error when two tables would share a name.
    pub fn from_pipeline(p: &Pipeline) -> Result<Option<Settings>, LoaderError> {
        let Some(w) = &p.warehouse else {
            return Ok(None);
        };
        let mut tables: Vec<TableSettings> = Vec::new();
        for t in &p.source.tables {
            let t = &t.value;
            let budget = p.budget(t);
            if let Some(other) = tables.iter().find(|o| o.name == t.table) {
                return Err(LoaderError::Config(format!(
                    "{t} and {} would both be the warehouse's {}.{}: the warehouse names tables \
                     by the source table's name",
                    other.source, w.schema, t.table
                )));
            }
            tables.push(TableSettings {
                source: t.to_string(),
                dir: layout::table_dir(&t.schema, &t.table),
                name: t.table.clone(),
                cadence: budget.map_or(Duration::from_secs(15), |b| b / 3),
            });
        }
        Ok(Some(Settings {
            tables,
            schema: w.schema.clone(),
            share: None,
            tombstone_retention: w.tombstone_retention.0,
            text_bytes: (w.driver.value == WarehouseDriver::RedshiftData)
                .then_some(sql::REDSHIFT_VARCHAR_BYTES),
            max_statements: (w.driver.value == WarehouseDriver::RedshiftData)
                .then_some(redshift::MAX_STATEMENTS),
            dialect: match w.driver.value {
                WarehouseDriver::Postgres => Dialect::Postgres,
                WarehouseDriver::RedshiftData => Dialect::Redshift,
            },
        }))
    }
}

/// What a run loaded.
#[derive(Debug, Default)]
pub struct Summary {
    pub loads: u64,
    pub objects: u64,
    pub rows: u64,
}

/// The warehouse, by driver.
enum Warehouse {
    Postgres(Postgres),
    RedshiftData(RedshiftData),
}

/// One object of a load, as each driver reads it: PostgreSQL is sent its rows, Redshift
/// copies it from the store by its manifest.
#[derive(Clone)]
pub struct Object {
    pub key: String,
    pub body: Bytes,
    pub manifest_url: String,
}

impl Warehouse {
    async fn connect(p: &Pipeline) -> Result<Warehouse, LoaderError> {
        let Some(w) = &p.warehouse else {
            return Err(LoaderError::Config("no warehouse section".into()));
        };
        match (w.driver.value, &w.postgres, &w.redshift_data) {
            (WarehouseDriver::Postgres, Some(pg), _) => {
                Ok(Warehouse::Postgres(Postgres::connect(&pg.url).await?))
            }
            (WarehouseDriver::RedshiftData, _, Some(r)) => Ok(Warehouse::RedshiftData(
                RedshiftData::connect(&r.value).await?,
            )),
            (WarehouseDriver::Postgres, None, _) => Err(LoaderError::Config(
                "warehouse.driver postgres needs a warehouse.postgres section".into(),
            )),
            (WarehouseDriver::RedshiftData, _, None) => Err(LoaderError::Config(
                "warehouse.driver redshift_data needs a warehouse.redshift_data section".into(),
            )),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Warehouse::Postgres(_) => Postgres::DIALECT,
            Warehouse::RedshiftData(_) => RedshiftData::DIALECT,
        }
    }

    fn endpoint(&self) -> String {
        match self {
            Warehouse::Postgres(p) => p.endpoint().to_owned(),
            Warehouse::RedshiftData(r) => r.endpoint().to_owned(),
        }
    }

    async fn execute(&mut self, statements: &[String]) -> Result<(), LoaderError> {
        match self {
            Warehouse::Postgres(p) => p.execute(statements).await,
            Warehouse::RedshiftData(r) => r.execute(statements).await,
        }
    }

    /// The columns of `relation`, a table in `t`'s state schema, and their types, in
    /// order; empty when it does not exist.
    async fn columns(
        &self,
        t: &sql::Table,
        relation: &str,
    ) -> Result<Vec<(String, String)>, LoaderError> {
        match self {
            Warehouse::Postgres(p) => p.columns(t, relation).await,
            Warehouse::RedshiftData(r) => r.columns(t, relation).await,
        }
    }

    async fn ledger(&self, t: &sql::Table) -> Result<Vec<(i32, i64, i64)>, LoaderError> {
        match self {
            Warehouse::Postgres(p) => p.ledger(t).await,
            Warehouse::RedshiftData(r) => r.ledger(t).await,
        }
    }

    async fn load(
        &mut self,
        load: &sql::Load,
        objects: &[Object],
        columns: &[Column],
    ) -> Result<(), LoaderError> {
        match self {
            Warehouse::Postgres(p) => p.load(load, objects, columns.len()).await,
            Warehouse::RedshiftData(r) => {
                let manifests: Vec<String> =
                    objects.iter().map(|o| o.manifest_url.clone()).collect();
                let nested = columns
                    .iter()
                    .any(|c| matches!(c.kind, crate::kind::ColumnKind::Array(_)));
                r.load(load, &manifests, nested).await
            }
        }
    }
}

/// An object waiting for its load.
#[derive(Clone, Debug)]
struct Pending {
    key: String,
    span: Span,
    bytes: u64,
    /// The oldest commit among its rows (Unix ms), when the batcher said.
    oldest_commit_ms: Option<i64>,
    /// Its place in the order objects and watermarks arrived.
    seq: u64,
}

/// Per table: what the ledger covers and what waits.
struct TableState {
    settings: TableSettings,
    /// Loaded offset ranges per partition.
    loaded: HashMap<i32, Vec<(i64, i64)>>,
    /// In offset order (the key last: objects a crash left beside each other may overlap).
    pending: BTreeMap<(i32, i64, String), Pending>,
    due: Option<Instant>,
    stopped: bool,
    /// The description the warehouse table was last prepared for, and its columns then.
    prepared: Option<(Description, Vec<String>)>,
    purged: Option<Instant>,
    /// Lake watermarks not yet loaded, oldest first: each with the arrival count before it
    /// (it is loaded once no object that arrived earlier waits).
    marks: VecDeque<(Watermark, u64)>,
    /// The loaded watermark, and whether the warehouse has not been told yet.
    loaded_mark: Option<Watermark>,
    unsaved: bool,
    /// Objects announced or found so far (each one's `seq`).
    arrivals: u64,
    /// Whether an object was skipped: its changes are not in the warehouse.
    skipped: bool,
}

impl TableState {
    fn new(settings: TableSettings) -> TableState {
        TableState {
            settings,
            loaded: HashMap::new(),
            pending: BTreeMap::new(),
            due: None,
            stopped: false,
            prepared: None,
            purged: None,
            marks: VecDeque::new(),
            loaded_mark: None,
            unsaved: false,
            arrivals: 0,
            skipped: false,
        }
    }

    fn covered(&self, span: Span) -> bool {
        let mut ranges = self
            .loaded
            .get(&span.partition)
            .cloned()
            .unwrap_or_default();
        ranges.sort_unstable();
        let mut next = span.first;
        for (first, last) in ranges {
            if first <= next && last >= next {
                next = last + 1;
            }
        }
        next > span.last
    }

    /// A lake watermark, after every object of the table that arrived so far.
    fn lake_mark(&mut self, w: Watermark) {
        if self.stopped || self.skipped {
            return;
        }
        let through = self.arrivals;
        match self.marks.back_mut() {
            // Nothing arrived between them: the newer says all.
            Some(last) if last.1 == through => last.0 = last.0.max(w),
            _ => self.marks.push_back((w, through)),
        }
        self.settle();
    }

    /// Moves the loaded watermark to the newest lake watermark whose objects are all
    /// loaded. A stopped table's stays where its loads stopped; so does that of a table an
    /// object of which was skipped (the warehouse lacks its changes) until a restart.
    fn settle(&mut self) {
        if self.stopped || self.skipped {
            self.marks.clear();
            return;
        }
        let waiting = self.pending.values().map(|p| p.seq).min();
        let mut newest = None;
        while let Some(&(w, through)) = self.marks.front() {
            if waiting.is_some_and(|seq| seq <= through) {
                break;
            }
            newest = Some(w);
            self.marks.pop_front();
        }
        if let Some(w) = newest.filter(|w| self.loaded_mark.is_none_or(|old| old < *w)) {
            self.loaded_mark = Some(w);
            self.unsaved = true;
            freshness::board().advance(&self.settings.source, Stage::Loaded, w);
        }
    }

    fn add(&mut self, p: Pending) {
        if self.stopped || self.covered(p.span) {
            return;
        }
        let now = Instant::now();
        // Due a third of the budget after its oldest change's commit (the batcher closed its
        // file within a quarter): loads gather what arrives meanwhile, and a change is
        // visible within about a third of its budget plus the load's own time. An object
        // found in the lake on start is due at once.
        let due = match p.oldest_commit_ms {
            Some(commit_ms) => {
                let age = chrono::Utc::now()
                    .timestamp_millis()
                    .saturating_sub(commit_ms);
                let age = Duration::from_millis(u64::try_from(age).unwrap_or(0));
                now + self.settings.cadence.saturating_sub(age)
            }
            None => now,
        };
        self.due = Some(self.due.map_or(due, |d| d.min(due)));
        let pending_bytes: u64 = self.pending.values().map(|p| p.bytes).sum::<u64>() + p.bytes;
        if self.pending.len() + 1 >= MAX_OBJECTS || pending_bytes >= MAX_BYTES {
            self.due = Some(now);
        }
        self.pending
            .insert((p.span.partition, p.span.first, p.key.clone()), p);
    }
}

struct Loader<'a> {
    p: &'a Pipeline,
    settings: &'a Settings,
    store: &'a Store,
    warehouse: Option<Warehouse>,
    tables: Vec<TableState>,
    summary: Summary,
    /// Since when the warehouse has not answered, while it does not.
    failing_since: Option<Instant>,
    saved: Instant,
}

/// Runs the loader until `stopped` (between loads: a load under way finishes first) or a
/// failure no table can go on past.
pub async fn run(
    p: &Pipeline,
    settings: &Settings,
    store: &Store,
    mut progress: mpsc::UnboundedReceiver<Progress>,
    mut stopped: watch::Receiver<bool>,
) -> Result<Summary, LoaderError> {
    let span = tracing::info_span!("sink", stage = "loader");
    async move {
        let mut l = Loader::new(p, settings, store);
        if !l.start(&mut stopped).await? {
            return Ok(l.summary);
        }
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut stopped_in_load = stopped.clone();
        loop {
            let next_due = l.tables.iter().filter_map(|t| t.due).min();
            if let Some(at) = next_due {
                timer.as_mut().reset(at.into());
            }
            tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                next = progress.recv() => match next {
                    Some(Progress::Written(w)) => l.written(w),
                    Some(Progress::Watermark { dir, watermark }) => {
                        if let Some(t) = l.tables.iter_mut().find(|t| t.settings.dir == dir) {
                            t.lake_mark(watermark);
                        }
                    }
                    // The batcher is gone: the supervisor restarts the half.
                    None => break,
                },
                _ = &mut timer, if next_due.is_some() => {
                    if !l.load_due(&mut stopped_in_load).await? {
                        break;
                    }
                }
            }
            if l.saved.elapsed() >= save_watermarks_every(settings.dialect) {
                l.save_watermarks().await;
            }
        }
        l.save_watermarks().await;
        info!(
            loads = l.summary.loads,
            objects = l.summary.objects,
            rows = l.summary.rows,
            "loader stopped; objects not yet loaded stay in the lake for the next start"
        );
        Ok(l.summary)
    }
    .instrument(span)
    .await
}

/// How far the warehouse is, as the loaders recorded it, for readers apart from them (the
/// router): per table, the newest of the bounds the records prove.
pub struct LoadedWatermarks {
    warehouse: Warehouse,
    schema: String,
}

impl LoadedWatermarks {
    /// `None` without a `warehouse` section.
    pub async fn connect(p: &Pipeline) -> Result<Option<LoadedWatermarks>, LoaderError> {
        let Some(w) = &p.warehouse else {
            return Ok(None);
        };
        Ok(Some(LoadedWatermarks {
            warehouse: Warehouse::connect(p).await?,
            schema: w.schema.clone(),
        }))
    }

    pub fn endpoint(&self) -> String {
        self.warehouse.endpoint()
    }

    /// A table is loaded up to a record of share `all`, or up to the oldest of a complete
    /// set of `I/N` records (every I of 0..N); a table without either is absent.
    pub async fn read(&mut self) -> Result<BTreeMap<String, Watermark>, LoaderError> {
        let q = sql::read_watermarks(&self.schema);
        let rows = match &self.warehouse {
            Warehouse::Postgres(p) => p.rows(&q).await,
            Warehouse::RedshiftData(r) => r.query(&q).await,
        };
        let rows = match rows {
            Ok(rows) => rows,
            // Not made yet: no loader has started.
            Err(e) if e.to_string().contains("does not exist") => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut records: Vec<(String, String, Watermark)> = Vec::new();
        for r in rows {
            if let [Some(table), Some(share), Some(lsn), Some(ms)] = r.as_slice() {
                if let (Ok(lsn), Ok(commit_ms)) = (lsn.parse::<u64>(), ms.parse::<i64>()) {
                    let w = Watermark {
                        lsn: crate::lsn::Lsn(lsn),
                        commit_ms,
                    };
                    records.push((table.clone(), share.clone(), w));
                }
            }
        }
        Ok(proven(&records))
    }
}

/// Per table, the newest watermark the records prove (see [`LoadedWatermarks::read`]).
fn proven(records: &[(String, String, Watermark)]) -> BTreeMap<String, Watermark> {
    let mut out: BTreeMap<String, Watermark> = BTreeMap::new();
    let mut shares: BTreeMap<(&str, u32), BTreeMap<u32, Watermark>> = BTreeMap::new();
    let prove = |out: &mut BTreeMap<String, Watermark>, table: &str, w: Watermark| {
        let slot = out.entry(table.to_owned()).or_insert(w);
        *slot = (*slot).max(w);
    };
    for (table, share, w) in records {
        if share == "all" {
            prove(&mut out, table, *w);
        } else if let Ok(s) = share.parse::<Share>() {
            shares.entry((table, s.of)).or_default().insert(s.index, *w);
        }
    }
    for ((table, of), got) in shares {
        if got.len() == of as usize {
            if let Some(oldest) = got.values().min() {
                prove(&mut out, table, *oldest);
            }
        }
    }
    out
}

/// `freshet replay`: forgets what the warehouse took of `source` from offset `from` on (from
/// 0: the table, its view and its state, so it is made again), for the next load to take it
/// again from the lake.
pub async fn forget(
    p: &Pipeline,
    settings: &Settings,
    source: &str,
    from: i64,
) -> Result<(), LoaderError> {
    let mut w = Warehouse::connect(p).await?;
    let d = w.dialect();
    w.execute(&sql::setup(&settings.schema, d)).await?;
    let name = settings
        .tables
        .iter()
        .find(|t| t.source == source)
        .map(|t| t.name.clone())
        .ok_or_else(|| LoaderError::Config(format!("{source} is not one of source.tables")))?;
    let t = sql::Table {
        source: source.to_owned(),
        schema: settings.schema.clone(),
        name,
        key: Vec::new(),
        eav: false,
    };
    w.execute(&sql::forget(&t, from)).await
}

/// Loads what the lake holds and the ledger does not cover, then returns.
pub async fn load_all(
    p: &Pipeline,
    settings: &Settings,
    store: &Store,
) -> Result<Summary, LoaderError> {
    let (_tx, mut stopped) = watch::channel(false);
    let mut l = Loader::new(p, settings, store);
    l.start(&mut stopped).await?;
    while l.tables.iter().any(|t| !t.pending.is_empty() && !t.stopped) {
        for t in &mut l.tables {
            t.due = Some(Instant::now());
        }
        l.load_due(&mut stopped).await?;
    }
    if let Some(t) = l.tables.iter().find(|t| t.stopped) {
        return Err(LoaderError::Config(format!(
            "loads of {} stopped (see the log)",
            t.settings.source
        )));
    }
    Ok(l.summary)
}

impl<'a> Loader<'a> {
    fn new(p: &'a Pipeline, settings: &'a Settings, store: &'a Store) -> Loader<'a> {
        Loader {
            p,
            settings,
            store,
            warehouse: None,
            tables: settings
                .tables
                .iter()
                .map(|t| TableState::new(t.clone()))
                .collect(),
            summary: Summary::default(),
            failing_since: None,
            saved: Instant::now(),
        }
    }
}

impl Loader<'_> {
    fn table(&self, source: &str) -> sql::Table {
        let t = self.tables.iter().find(|t| t.settings.source == source);
        sql::Table {
            source: source.to_owned(),
            schema: self.settings.schema.clone(),
            name: t.map_or_else(String::new, |t| t.settings.name.clone()),
            key: Vec::new(),
            eav: false,
        }
    }

    /// Sets the warehouse up, reads the ledger and lists the lake; false when stopped first.
    async fn start(&mut self, stopped: &mut watch::Receiver<bool>) -> Result<bool, LoaderError> {
        let schema = self.settings.schema.clone();
        let sources: Vec<String> = self
            .tables
            .iter()
            .map(|t| t.settings.source.clone())
            .collect();
        let mut ledgers = Vec::new();
        for source in &sources {
            let t = self.table(source);
            let schema = schema.clone();
            let got = self
                .with_warehouse(stopped, move |w| {
                    let (t, schema) = (t.clone(), schema.clone());
                    Box::pin(async move {
                        w.execute(&sql::setup(&schema, w.dialect())).await?;
                        w.ledger(&t).await
                    })
                })
                .await?;
            match got {
                Some(l) => ledgers.push(l),
                None => return Ok(false),
            }
        }
        for (state, ledger) in self.tables.iter_mut().zip(ledgers) {
            for (partition, first, last) in ledger {
                state
                    .loaded
                    .entry(partition)
                    .or_default()
                    .push((first, last));
            }
        }
        for i in 0..self.tables.len() {
            let dir = self.tables[i].settings.dir.clone();
            let objects = loop {
                match self.store.list(&format!("{dir}/")).await {
                    Ok(o) => break o,
                    Err(e) if e.is_transient() => {
                        if wait(stopped, RETRY_MIN).await {
                            return Ok(false);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            for o in objects {
                let Some(span) = layout::parse(&o.key) else {
                    continue;
                };
                if self
                    .settings
                    .share
                    .is_some_and(|s| !s.takes(span.partition))
                {
                    continue;
                }
                let t = &mut self.tables[i];
                t.arrivals += 1;
                let seq = t.arrivals;
                t.add(Pending {
                    key: o.key,
                    span,
                    bytes: o.size,
                    oldest_commit_ms: None,
                    seq,
                });
            }
            // What the lake held before this start loads now.
            if !self.tables[i].pending.is_empty() {
                self.tables[i].due = Some(Instant::now());
            }
            info!(
                table = %self.tables[i].settings.source,
                pending = self.tables[i].pending.len(),
                "resuming from the warehouse's ledger"
            );
        }
        Ok(true)
    }

    fn written(&mut self, w: Written) {
        let Some(t) = self.tables.iter_mut().find(|t| t.settings.dir == w.dir) else {
            return;
        };
        t.arrivals += 1;
        let seq = t.arrivals;
        t.add(Pending {
            key: w.key,
            span: w.span,
            bytes: w.bytes,
            oldest_commit_ms: Some(w.oldest_commit_ms),
            seq,
        });
        metrics::gauge!(names::LOADER_PENDING_OBJECTS, "table" => t.settings.source.clone())
            .set(t.pending.len() as f64);
    }

    /// Loads every table that is due; false when stopped meanwhile.
    async fn load_due(&mut self, stopped: &mut watch::Receiver<bool>) -> Result<bool, LoaderError> {
        let now = Instant::now();
        for i in 0..self.tables.len() {
            if self.tables[i].due.is_none_or(|d| d > now) {
                continue;
            }
            self.tables[i].due = None;
            while !self.tables[i].pending.is_empty() && !self.tables[i].stopped {
                if *stopped.borrow() {
                    return Ok(false);
                }
                let loaded = self.load_batch(i, stopped).await;
                self.tables[i].settle();
                match loaded {
                    Ok(true) => {}
                    Ok(false) => return Ok(false),
                    Err(e) => {
                        let t = &mut self.tables[i];
                        t.stopped = true;
                        t.pending.clear();
                        telemetry::emit(Event::TableStopped {
                            table: t.settings.source.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            let t = &self.tables[i];
            metrics::gauge!(names::LOADER_PENDING_OBJECTS, "table" => t.settings.source.clone())
                .set(t.pending.len() as f64);
            if !t.stopped
                && t.purged.is_none_or(|at| at.elapsed() >= PURGE_EVERY)
                && !self.purge(i, stopped).await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Tombstones past retention and rows behind the TRUNCATE barrier leave the change
    /// table, in a transaction of their own.
    async fn purge(
        &mut self,
        i: usize,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, LoaderError> {
        let Some((description, _)) = self.tables[i].prepared.clone() else {
            return Ok(true);
        };
        let mut t = self.table(&self.tables[i].settings.source);
        t.key = description.key.clone();
        let columns: Vec<Column> = description
            .kinds()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, kind)| Column { name, kind })
            .collect();
        let retention = chrono::Duration::from_std(self.settings.tombstone_retention)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .to_rfc3339();
        let statements = sql::purge(&t, &columns, &cutoff);
        let done = self
            .with_warehouse(stopped, |w| {
                let statements = statements.clone();
                Box::pin(async move { w.execute(&statements).await })
            })
            .await;
        self.tables[i].purged = Some(Instant::now());
        match done {
            Ok(done) => Ok(done.is_some()),
            // Upkeep, not loading: the next hour tries again.
            Err(error) => {
                tracing::warn!(table = %t.source, %error, "purging tombstones failed");
                Ok(true)
            }
        }
    }

    /// Loads the table's next batch of objects; false when stopped while waiting for the
    /// warehouse. An error stops the table.
    async fn load_batch(
        &mut self,
        i: usize,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, LoaderError> {
        let started = Instant::now();
        let source = self.tables[i].settings.source.clone();
        // Fetch objects in offset order until the batch is full or the columns change.
        let mut batch: Vec<(Pending, Bytes)> = Vec::new();
        let mut description: Option<Description> = None;
        let mut bytes = 0;
        let mut object_rows: Vec<u64> = Vec::new();
        let candidates: Vec<Pending> = self.tables[i].pending.values().cloned().collect();
        for p in candidates {
            if batch.len() >= MAX_OBJECTS || (bytes >= MAX_BYTES && !batch.is_empty()) {
                break;
            }
            let body = loop {
                match self.store.get(&p.key).await {
                    Ok(b) => break b,
                    Err(e) if e.is_transient() => {
                        if wait(stopped, RETRY_MIN).await {
                            return Ok(false);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let (d, rows_in_object) = match describe(&body) {
                Ok((d, r)) if d.table == source => (d, r),
                Ok((d, _)) => {
                    self.skip(i, &p, format!("it holds {}, not {source}", d.table));
                    continue;
                }
                Err(why) => {
                    self.skip(i, &p, why);
                    continue;
                }
            };
            if description.as_ref().is_some_and(|first| *first != d) {
                break;
            }
            description = Some(d);
            bytes += body.len() as u64;
            object_rows.push(rows_in_object);
            batch.push((p, body));
        }
        let Some(description) = description else {
            return Ok(true);
        };
        let kinds = description.kinds().map_err(|why| LoaderError::Object {
            key: batch[0].0.key.clone(),
            why,
        })?;
        let columns: Vec<Column> = kinds
            .into_iter()
            .map(|(name, kind)| Column { name, kind })
            .collect();
        let mut t = self.table(&source);
        t.key = description.key.clone();
        t.eav = description.eav;
        if let Some(max) = self.settings.max_statements {
            // One COPY per object beside the load's own statements, within one batch.
            let own = sql::load(&t, &columns, &[], &[], "", self.settings.dialect);
            // A constant count (the SQL's statements do not grow with the columns).
            let room = max
                .saturating_sub(own.before_copy.len() + own.after_copy.len())
                .max(1);
            batch.truncate(room);
            object_rows.truncate(room);
        }
        let rows: u64 = object_rows.iter().sum();
        let objects: Vec<sql::Object> = batch
            .iter()
            .map(|(p, _)| sql::Object {
                key: p.key.clone(),
                partition: p.span.partition,
                first: p.span.first,
                last: p.span.last,
            })
            .collect();
        let mut bodies: Vec<Object> = batch
            .iter()
            .map(|(p, b)| Object {
                key: p.key.clone(),
                body: b.clone(),
                manifest_url: self.store.url(&layout::manifest_key(&p.key)),
            })
            .collect();
        if let Some(limit) = self.settings.text_bytes {
            for o in &mut bodies {
                if !self.cut_long_text(&source, o, limit, stopped).await? {
                    return Ok(false);
                }
            }
        }
        let prepared = self.tables[i]
            .prepared
            .as_ref()
            .filter(|(d, _)| *d == description)
            .map(|(_, c)| c.clone());
        let loaded = self
            .with_warehouse(stopped, |w| {
                let (t, columns, objects, bodies, prepared) = (
                    t.clone(),
                    columns.clone(),
                    objects.clone(),
                    bodies.clone(),
                    prepared.clone(),
                );
                Box::pin(async move {
                    let table_columns = match prepared {
                        Some(c) => c,
                        None => prepare(w, &t, &columns).await?,
                    };
                    let at = chrono::Utc::now().to_rfc3339();
                    let load = sql::load(&t, &columns, &table_columns, &objects, &at, w.dialect());
                    w.load(&load, &bodies, &columns).await?;
                    Ok(table_columns)
                })
            })
            .await;
        match loaded {
            Ok(Some(table_columns)) => {
                self.tables[i].prepared = Some((description, table_columns));
            }
            Ok(None) => return Ok(false),
            Err(LoaderError::Object { key, why }) => {
                if let Some((p, _)) = batch.iter().find(|(p, _)| p.key == key) {
                    let p = p.clone();
                    self.skip(i, &p, why);
                    return Ok(true);
                }
                return Err(LoaderError::Object { key, why });
            }
            Err(e) => return Err(e),
        }
        let took = started.elapsed();
        let state = &mut self.tables[i];
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (p, _) in &batch {
            state
                .pending
                .remove(&(p.span.partition, p.span.first, p.key.clone()));
            state
                .loaded
                .entry(p.span.partition)
                .or_default()
                .push((p.span.first, p.span.last));
            if let Some(c) = p.oldest_commit_ms {
                metrics::histogram!(names::LOADER_COMMIT_TO_VISIBLE_SECONDS, "table" => source.clone())
                    .record(now_ms.saturating_sub(c).max(0) as f64 / 1000.0);
            }
        }
        metrics::counter!(names::LOADER_ROWS_COPIED_TOTAL, "table" => source.clone())
            .increment(rows);
        metrics::counter!(names::LOADER_OBJECTS_LOADED_TOTAL, "table" => source.clone())
            .increment(batch.len() as u64);
        metrics::histogram!(names::LOADER_LOAD_SECONDS, "table" => source.clone())
            .record(took.as_secs_f64());
        telemetry::emit(Event::Loaded {
            table: source,
            objects: batch.len(),
            rows,
            took,
        });
        self.summary.loads += 1;
        self.summary.objects += batch.len() as u64;
        self.summary.rows += rows;
        Ok(true)
    }

    /// Truncate and flag: an object holding text longer than the warehouse takes is written
    /// again, cut, beside itself, and loaded from there; false when stopped meanwhile.
    async fn cut_long_text(
        &self,
        source: &str,
        o: &mut Object,
        limit: usize,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, LoaderError> {
        let Some(oversized::Cut { body, columns: cut }) = oversized::truncate(&o.body, limit)
            .map_err(|why| LoaderError::Object {
                key: o.key.clone(),
                why,
            })?
        else {
            return Ok(true);
        };
        let key = oversized::key_of(&o.key);
        let manifest = layout::manifest(&self.store.url(&key), body.len() as u64);
        for (k, b) in [
            (key.clone(), body.clone()),
            (layout::manifest_key(&key), Bytes::from(manifest)),
        ] {
            loop {
                match self.store.put(&k, b.clone()).await {
                    Ok(()) => break,
                    Err(e) if e.is_transient() => {
                        if wait(stopped, RETRY_MIN).await {
                            return Ok(false);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for (column, n) in cut {
            tracing::warn!(table = %source, %column, values = n, object = %o.key, limit, "text longer than the warehouse takes: cut to its limit and loaded (truncate and flag)");
            metrics::counter!(names::LOADER_VALUES_TRUNCATED_TOTAL, "table" => source.to_owned(), "column" => column)
                .increment(n);
        }
        o.manifest_url = self.store.url(&layout::manifest_key(&key));
        o.body = body;
        Ok(true)
    }

    fn skip(&mut self, i: usize, p: &Pending, error: String) {
        let t = &mut self.tables[i];
        t.skipped = true;
        t.pending
            .remove(&(p.span.partition, p.span.first, p.key.clone()));
        telemetry::emit(Event::ObjectSkipped {
            table: t.settings.source.clone(),
            key: p.key.clone(),
            error,
        });
    }

    /// Runs `op` on the warehouse, connecting first when needed; while the warehouse does
    /// not answer, waits and tries again (reconnecting), with one `stalled` event and one
    /// `recovered`. `None` when stopped while waiting.
    async fn with_warehouse<T>(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
        mut op: impl for<'w> FnMut(
            &'w mut Warehouse,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, LoaderError>> + Send + 'w>,
        >,
    ) -> Result<Option<T>, LoaderError> {
        let mut backoff = RETRY_MIN;
        loop {
            let result = match &mut self.warehouse {
                Some(w) => op(w).await,
                None => match Warehouse::connect(self.p).await {
                    Ok(w) => {
                        let w = self.warehouse.insert(w);
                        op(w).await
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(v) => {
                    if let Some(at) = self.failing_since.take() {
                        telemetry::emit(Event::Recovered {
                            stage: "loader",
                            endpoint: self.endpoint(),
                            waited: at.elapsed(),
                        });
                    }
                    return Ok(Some(v));
                }
                Err(e) if e.is_transient() => {
                    // The connection may be dead: the next attempt makes a new one.
                    self.warehouse = None;
                    if self.failing_since.is_none() {
                        self.failing_since = Some(Instant::now());
                        telemetry::emit(Event::Stalled {
                            stage: "loader",
                            endpoint: self.endpoint(),
                            waited: Duration::ZERO,
                            error: e.to_string(),
                        });
                    }
                    if wait(stopped, backoff).await {
                        return Ok(None);
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records the loaded watermarks that moved in the warehouse, for readers apart from
    /// this process (the router). Best effort, never waiting: a warehouse that does not
    /// answer is the loads' to wait for, and the next call says it again.
    async fn save_watermarks(&mut self) {
        self.saved = Instant::now();
        let Some(w) = &mut self.warehouse else {
            return;
        };
        let marks: Vec<(String, u64, i64)> = self
            .tables
            .iter()
            .filter(|t| t.unsaved)
            .filter_map(|t| Some((t.settings.source.clone(), t.loaded_mark?)))
            .map(|(n, m)| (n, m.lsn.0, m.commit_ms))
            .collect();
        let share = self
            .settings
            .share
            .map_or_else(|| "all".to_owned(), |s| format!("{}/{}", s.index, s.of));
        let now_ms = chrono::Utc::now().timestamp_millis();
        let statements = sql::save_watermarks(&self.settings.schema, &share, &marks, now_ms);
        if statements.is_empty() {
            return;
        }
        let within = save_watermarks_every(self.settings.dialect) * 10;
        match tokio::time::timeout(within, w.execute(&statements)).await {
            Ok(Ok(())) => self.tables.iter_mut().for_each(|t| t.unsaved = false),
            Ok(Err(error)) => {
                tracing::debug!(%error, "loaded watermarks not recorded; tried again later")
            }
            Err(_) => {
                // Cut off mid-transaction: the next use connects afresh.
                self.warehouse = None;
                tracing::debug!("loaded watermarks not recorded in time; tried again later")
            }
        }
    }

    fn endpoint(&self) -> String {
        match (&self.warehouse, &self.p.warehouse) {
            (Some(w), _) => w.endpoint(),
            (None, Some(w)) => match &w.postgres {
                Some(pg) => crate::pg::endpoint(&pg.url.to_config()),
                None => "the warehouse".into(),
            },
            (None, None) => "the warehouse".into(),
        }
    }
}

/// Makes the change table and its view on the first load; adds the columns the source
/// added; refuses a column whose type changed; writes the view again. Returns the change
/// table's source columns (those the source dropped included).
async fn prepare(
    w: &mut Warehouse,
    t: &sql::Table,
    columns: &[Column],
) -> Result<Vec<String>, LoaderError> {
    let d = w.dialect();
    let mut existing = w.columns(t, &t.name).await?;
    if existing.is_empty() {
        w.execute(&sql::create(t, columns, d)).await?;
        existing = w.columns(t, &t.name).await?;
    }
    for c in columns {
        let want = sql::sql_type(&c.kind, d);
        match existing.iter().find(|(n, _)| *n == c.name) {
            Some((_, have)) if *have == want => {}
            Some((_, have)) => {
                return Err(LoaderError::Column {
                    table: t.source.clone(),
                    column: c.name.clone(),
                    why: format!(
                        "its type is now {want} at the source, and {} holds {have}: the \
                         warehouse cannot follow. Rebuild the table: drop it and its view, \
                         and replay it",
                        t.changes()
                    ),
                });
            }
            None => {
                w.execute(&[sql::add_column(&t.changes(), c, d)]).await?;
                existing.push((c.name.clone(), want));
            }
        }
    }
    // Checked apart from the change table: a crash between the two leaves them different.
    let handed = sql::handed(t, columns);
    if !handed.is_empty() {
        let have = w.columns(t, &t.moved_name()).await?;
        if have.is_empty() {
            w.execute(&[sql::create_moved(t, &handed, d)]).await?;
        } else {
            for c in handed
                .iter()
                .filter(|c| !have.iter().any(|(n, _)| *n == c.name))
            {
                w.execute(&[sql::add_column(&t.moved(), c, d)]).await?;
            }
        }
    }
    let table_columns: Vec<String> = existing
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !n.starts_with("_freshet_"))
        .collect();
    // A keyed table's view keeps a dropped column (NULL in rows changed since); a
    // multiset's counts rows by the source's columns of now, so its view follows them.
    let view_columns: Vec<String> = if t.key.is_empty() {
        table_columns
            .iter()
            .filter(|n| columns.iter().any(|c| &c.name == *n))
            .cloned()
            .collect()
    } else {
        table_columns.clone()
    };
    w.execute(&sql::view(t, &view_columns, d)).await?;
    Ok(table_columns)
}

/// The table description an object carries, and its rows.
fn describe(body: &Bytes) -> Result<(Description, u64), String> {
    let reader = SerializedFileReader::new(body.clone())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let rows = u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
    let text = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == DESCRIPTION_KEY))
        .and_then(|kv| kv.value.clone())
        .ok_or_else(|| format!("no {DESCRIPTION_KEY} metadata: not an object Freshet wrote"))?;
    let d =
        serde_json::from_str(&text).map_err(|e| format!("its {DESCRIPTION_KEY} metadata: {e}"))?;
    Ok((d, rows))
}

/// Sleeps `d`; true when stopped first.
async fn wait(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stopped.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lsn: u64) -> Watermark {
        Watermark {
            lsn: crate::lsn::Lsn(lsn),
            commit_ms: lsn as i64,
        }
    }

    fn table() -> TableState {
        TableState::new(TableSettings {
            source: "public.unit_settle".into(),
            dir: "public/unit_settle".into(),
            name: "unit_settle".into(),
            cadence: Duration::from_secs(10),
        })
    }

    fn arrive(t: &mut TableState, first: i64) {
        t.arrivals += 1;
        let seq = t.arrivals;
        t.add(Pending {
            key: format!("o{first}"),
            span: Span {
                partition: 0,
                first,
                last: first + 9,
            },
            bytes: 1,
            oldest_commit_ms: None,
            seq,
        });
    }

    #[test]
    fn a_lake_watermark_is_loaded_only_once_every_object_before_it_is() {
        let mut t = table();
        arrive(&mut t, 0);
        t.lake_mark(w(100));
        assert_eq!(t.loaded_mark, None, "the object just before it waits");
        arrive(&mut t, 10);
        t.lake_mark(w(200));
        t.pending.remove(&(0, 0, "o0".into()));
        t.settle();
        assert_eq!(t.loaded_mark, Some(w(100)));
        t.pending.remove(&(0, 10, "o10".into()));
        t.settle();
        assert_eq!(t.loaded_mark, Some(w(200)));
        assert!(t.unsaved);
        // Nothing waiting: a watermark is loaded at once.
        t.lake_mark(w(300));
        assert_eq!(t.loaded_mark, Some(w(300)));
    }

    #[test]
    fn a_skipped_object_holds_the_loaded_watermark() {
        let mut t = table();
        arrive(&mut t, 0);
        t.lake_mark(w(100));
        t.skipped = true;
        t.pending.clear();
        t.settle();
        t.lake_mark(w(200));
        assert_eq!(t.loaded_mark, None);
        assert!(
            t.marks.is_empty(),
            "nothing kept for a table that cannot move"
        );
    }

    #[test]
    fn a_table_is_loaded_up_to_its_whole_record_or_its_slowest_share() {
        let r = |t: &str, s: &str, l| (t.to_owned(), s.to_owned(), w(l));
        let got = proven(&[
            r("a", "all", 50),
            r("b", "0/2", 300),
            r("b", "1/2", 200),
            // Only one share of three has recorded: nothing is proven by them.
            r("c", "0/3", 900),
            r("c", "1/3", 900),
            // An earlier run without shares still bounds it.
            r("d", "all", 100),
            r("d", "0/2", 400),
            r("d", "1/2", 500),
            r("e", "nonsense", 7),
        ]);
        let want: BTreeMap<String, Watermark> = [("a", 50), ("b", 200), ("d", 400)]
            .into_iter()
            .map(|(t, l)| (t.to_owned(), w(l)))
            .collect();
        assert_eq!(got, want);
    }
}
