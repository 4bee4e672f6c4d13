//! The batcher: consumes the table topics, writes each (table, partition)'s changes into a
//! Parquet file, and hands every file that is due to the store as one object.
//!
//! Its position lives with the data: on start it lists the store and resumes each partition
//! just past the last offset an object holds, whatever the consumer group says. Object names
//! follow from their records, so a crash between an upload and the offset commit rewrites
//! the same object, never a second one. Kafka offsets are committed after each object is
//! durable, for lag tooling only.
//!
//! It also reads the watermark topic's marks: a mark whose offsets a table's partitions have
//! passed in durable objects moves that table's `lake` watermark, announced to the loader
//! behind the objects it covers.

pub mod columns;
pub mod layout;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::{info, Instrument as _};

use crate::config::{ParquetCompression, Pipeline};
use crate::freshness::{self, Mark, Stage, Watermark};
use crate::kafka::{self, tail::DecodeError, tail::Schemas};
use crate::store::{Store, StoreError};
use crate::telemetry::{self, names, Event};
use crate::transform::decode::{read_shaped, RowShape};
use columns::{Description, Layout, Row};
use layout::Span;

/// Rows gathered before they are encoded into the open file's current row group, and the
/// record bytes that encode them early: a column of one Arrow batch holds at most 2 GiB.
const BATCH_ROWS: usize = 8192;
const BATCH_BYTES: usize = 32 << 20;
/// Row groups of at most this many bytes: Redshift's COPY splits Parquet work by row group.
const ROW_GROUP_BYTES: usize = 64 << 20;
/// Marks kept while the table topics' records they cover have not arrived.
const MAX_MARKS: usize = 4096;
/// No lake file is closed younger than this, whatever the table's budget: a 0 ms budget is
/// met by reading the primary, not by one object per transaction.
const MIN_FILE_AGE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka topic {0} does not exist yet (capture creates it on its first run)")]
    NoTopic(String),
    /// A record the batcher cannot read: it stops before it, so nothing past it is in the
    /// lake or committed.
    #[error(
        "{topic} partition {partition} offset {offset}: {why}; the batcher stops before this \
         record (nothing after it is written or committed): look at it with `freshet tail`, \
         mend what wrote it, and start the sink again"
    )]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        why: String,
    },
    #[error("writing the Parquet file of {table}: {why}")]
    Parquet { table: String, why: String },
    /// The registry or the schema topic did not answer.
    #[error("looking up a record's schema: {0}")]
    Schemas(String),
    /// The lake resumes where Kafka no longer has records (retention passed them) or has not
    /// got them yet (the topic was recreated or truncated): reading on would lose records or
    /// write a second history over the first.
    #[error(
        "kafka: {error}: the lake resumes at offsets the topic does not hold ({resume}). \
         Records the lake never got were deleted (retention), or the topic was recreated. \
         Rebuild the affected table's lake from a new snapshot (`freshet snapshot`) under a new \
         batcher.store prefix, or move its objects aside"
    )]
    OutOfRange { error: String, resume: String },
}

impl BatcherError {
    pub fn is_transient(&self) -> bool {
        match self {
            BatcherError::Kafka(k) => k.is_transient(),
            BatcherError::Store(s) => s.is_transient(),
            BatcherError::NoTopic(_) | BatcherError::Schemas(_) => true,
            BatcherError::Record { .. }
            | BatcherError::Parquet { .. }
            | BatcherError::OutOfRange { .. } => false,
        }
    }
}

/// One captured table as the batcher handles it.
#[derive(Clone, Debug)]
pub struct TableSettings {
    pub topic: String,
    /// `schema.table`, for messages and labels.
    pub name: String,
    /// The table's directory in the lake.
    pub dir: String,
    /// Longest an open file waits: the rotation's `max_age`, lowered to a quarter of the
    /// table's freshness budget.
    pub max_age: Duration,
    pub eav: bool,
}

/// Which partitions this process batches, when several share the topics: those whose number
/// is `index` modulo `of` (`--sink-share 1/3`). A static split: Freshet never relies on
/// consumer-group rebalancing (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub index: u32,
    pub of: u32,
}

impl std::str::FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        let parse = || -> Option<Share> {
            let (i, n) = s.split_once('/')?;
            let share = Share {
                index: i.trim().parse().ok()?,
                of: n.trim().parse().ok()?,
            };
            (share.of > 0 && share.index < share.of).then_some(share)
        };
        parse().ok_or_else(|| format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/2"))
    }
}

impl Share {
    pub fn takes(self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p % self.of == self.index)
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub tables: Vec<TableSettings>,
    /// All partitions when `None`.
    pub share: Option<Share>,
    pub max_rows: u64,
    pub max_bytes: u64,
    pub compression: ParquetCompression,
    pub group: String,
    /// Read every partition from this offset instead of where the lake ends (`freshet
    /// replay`): objects already there are written again, under the same name when their
    /// span is the same.
    pub from: Option<i64>,
}

impl Settings {
    pub fn from_pipeline(p: &Pipeline) -> Option<Settings> {
        let (k, b) = (p.kafka.as_ref()?, p.batcher.as_ref()?);
        let eav = p.transform.eav.as_ref().map(|e| e.values.value.clone());
        let tables = p
            .source
            .tables
            .iter()
            .map(|t| {
                let t = &t.value;
                let budget = p.budget(t);
                // A quarter of the budget for the file, a quarter for its load: a change is in
                // the warehouse within about half its table's budget.
                let max_age =
                    budget.map_or(b.rotation.max_age.0, |d| (d / 4).min(b.rotation.max_age.0));
                TableSettings {
                    topic: crate::transform::topic_name(&k.topic_prefix, &t.schema, &t.table),
                    name: t.to_string(),
                    dir: layout::table_dir(&t.schema, &t.table),
                    max_age: max_age.max(MIN_FILE_AGE),
                    eav: eav.as_ref() == Some(t),
                }
            })
            .collect();
        Some(Settings {
            tables,
            share: None,
            max_rows: b.rotation.max_rows,
            max_bytes: b.rotation.max_bytes,
            compression: b.compression,
            group: b.consumer_group.clone(),
            from: None,
        })
    }
}

/// An object the batcher made durable, for the loader.
#[derive(Clone, Debug)]
pub struct Written {
    /// The table's directory in the lake.
    pub dir: String,
    pub key: String,
    pub span: Span,
    pub bytes: u64,
    /// The oldest commit among its rows (Unix ms, the source's clock).
    pub oldest_commit_ms: i64,
}

/// What the batcher tells the loader, in the order it happened.
#[derive(Clone, Debug)]
pub enum Progress {
    /// An object made durable.
    Written(Written),
    /// Every change of the table in `dir` committed up to `watermark` is in the objects
    /// announced before.
    Watermark { dir: String, watermark: Watermark },
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Records consumed (tombstones included) and their value bytes.
    pub records: u64,
    pub consumed_bytes: u64,
    pub objects: u64,
    pub rows: u64,
    /// Parquet bytes written, and the smallest and largest object.
    pub written_bytes: u64,
    pub smallest: u64,
    pub largest: u64,
}

/// An open file: rows not yet encoded, the encoder, and the span it covers.
struct OpenFile {
    schema: Arc<apache_avro::Schema>,
    layout: Layout,
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<Row>,
    /// The record bytes the pending rows came from.
    pending_bytes: usize,
    rows: u64,
    span: Span,
    first_commit_ms: i64,
    oldest_commit_ms: i64,
    /// When the file closes though it is not full: its first row's commit plus the table's
    /// age limit, so the budget counts from PostgreSQL's commit, not from arrival here.
    due: Instant,
}

impl OpenFile {
    fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }
}

struct Batcher<'a> {
    k: &'a crate::config::Kafka,
    settings: &'a Settings,
    store: &'a Store,
    consumer: StreamConsumer<kafka::Context>,
    schemas: Schemas,
    by_topic: HashMap<String, usize>,
    /// Each schema's row shape (the schema kept with it, so its address stays its own).
    shapes: HashMap<usize, (Arc<apache_avro::Schema>, Arc<RowShape>)>,
    /// Per table, looked up once: this counts every record.
    consumed: Vec<metrics::Counter>,
    /// Where each partition resumed, for the out-of-range error.
    resumed: Vec<String>,
    files: BTreeMap<(usize, i32), OpenFile>,
    props: WriterProperties,
    summary: Summary,
    /// Where each durable object and watermark is announced (the loader), if anywhere.
    progress: Option<mpsc::UnboundedSender<Progress>>,
    /// The watermark topic, when the marks on it are read (not by `drain`).
    marks_topic: Option<String>,
    /// Marks not yet passed by every table, oldest first.
    marks: VecDeque<Mark>,
    /// Per table, the partitions read.
    partitions: Vec<Vec<i32>>,
    /// Per (table, partition), the offset after the last record read.
    next: HashMap<(usize, i32), i64>,
    /// Per table, the lake watermark announced last.
    lake: Vec<Option<Watermark>>,
}

/// Reads the table topics from where the lake ends until no record has arrived for `quiet`,
/// then writes every open file: `freshet bench lake`'s run.
pub async fn drain(
    k: &crate::config::Kafka,
    settings: &Settings,
    store: &Store,
    quiet: Duration,
) -> Result<Summary, BatcherError> {
    let mut b = Batcher::start(k, settings, store, None, false).await?;
    while let Ok(message) = tokio::time::timeout(quiet, b.consumer.recv()).await {
        let message = message.map_err(|e| b.consume_error(e))?;
        let owned = message.detach();
        b.take(owned).await?;
    }
    b.close_all("shutdown").await?;
    Ok(b.summary)
}

/// Runs the batcher until `stopped` (then writes every open file) or an error; each
/// durable object and lake watermark is announced on `progress`.
pub async fn run(
    k: &crate::config::Kafka,
    settings: &Settings,
    store: &Store,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    stopped: watch::Receiver<bool>,
) -> Result<Summary, BatcherError> {
    let span = tracing::info_span!("sink", stage = "batcher");
    async move {
        let mut b = Batcher::start(k, settings, store, progress, true).await?;
        b.consume(stopped).await?;
        Ok(b.summary)
    }
    .instrument(span)
    .await
}

impl<'a> Batcher<'a> {
    async fn start(
        k: &'a crate::config::Kafka,
        settings: &'a Settings,
        store: &'a Store,
        progress: Option<mpsc::UnboundedSender<Progress>>,
        read_marks: bool,
    ) -> Result<Batcher<'a>, BatcherError> {
        let brokers = k.brokers.0.clone();
        let client = |what: String| {
            let brokers = brokers.clone();
            move |error| kafka::Error::Client {
                brokers,
                what,
                error: Box::new(error),
            }
        };
        let context = kafka::Context::new(k)?;
        let consumer: StreamConsumer<kafka::Context> = kafka::client_config(k)?
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Never a silent jump: an offset the topic does not hold is an error (OutOfRange).
            .set("auto.offset.reset", "error")
            // Small budgets need records soon after they land, not after a half-second wait.
            .set("fetch.wait.max.ms", "100")
            // Large fetches while catching up: a backlog arrives in fewer round trips.
            .set("max.partition.fetch.bytes", "8388608")
            .create_with_context(context.clone())
            .map_err(client("creating the batcher's consumer".into()))?;
        // The metadata below is asked before the stream's first poll.
        tokio::task::block_in_place(|| context.authenticate(&k.brokers.0, consumer.client()))?;
        let mut tpl = TopicPartitionList::new();
        let mut resumed = Vec::new();
        let mut next_offsets = HashMap::new();
        let mut table_partitions = Vec::new();
        for (i, t) in settings.tables.iter().enumerate() {
            let metadata = {
                let consumer = &consumer;
                let topic = t.topic.clone();
                tokio::task::block_in_place(|| {
                    consumer.fetch_metadata(Some(&topic), Duration::from_secs(30))
                })
            }
            .map_err(client(format!("reading the metadata of {}", t.topic)))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|m| m.name() == t.topic && m.error().is_none())
                .flat_map(|m| m.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(BatcherError::NoTopic(t.topic.clone()));
            }
            let next = resume_points(store, &t.dir).await?;
            let partitions: Vec<i32> = partitions
                .into_iter()
                .filter(|p| settings.share.is_none_or(|s| s.takes(*p)))
                .collect();
            for &p in &partitions {
                let (low, high) = tokio::task::block_in_place(|| {
                    consumer.fetch_watermarks(&t.topic, p, Duration::from_secs(30))
                })
                .map_err(client(format!("reading the offsets of {}/{p}", t.topic)))?;
                let offset = match (settings.from, next.get(&p)) {
                    (Some(n), _) | (None, Some(&n)) => Offset::Offset(n),
                    (None, None) => Offset::Beginning,
                };
                info!(topic = %t.topic, partition = p, ?offset, "resuming from the lake");
                if let Offset::Offset(n) = offset {
                    let at = format!("{}/{p} at {n}", t.topic);
                    // Records deleted before the lake got them; or a topic made again, empty.
                    // (A partition ahead of a topic that holds records is the broker's to
                    // report, as OffsetOutOfRange, when the fetch reaches it.)
                    if n < low || (high == 0 && n > 0) {
                        return Err(BatcherError::OutOfRange {
                            error: format!("the topic holds offsets {low}..{high}"),
                            resume: at,
                        });
                    }
                    resumed.push(at);
                }
                next_offsets.insert(
                    (i, p),
                    match offset {
                        Offset::Offset(n) => n,
                        _ => low,
                    },
                );
                tpl.add_partition_offset(&t.topic, p, offset)
                    .map_err(client(format!("assigning {}/{p}", t.topic)))?;
            }
            table_partitions.push(partitions);
        }
        let marks_topic = freshness::topic(&k.topic_prefix);
        let marks_topic = if read_marks {
            let metadata = tokio::task::block_in_place(|| {
                consumer.fetch_metadata(Some(&marks_topic), Duration::from_secs(30))
            })
            .map_err(client(format!("reading the metadata of {marks_topic}")))?;
            let exists = metadata.topics().iter().any(|m| {
                m.name() == marks_topic && m.error().is_none() && !m.partitions().is_empty()
            });
            if exists {
                // The newest mark is all that matters: each covers everything before it.
                tpl.add_partition_offset(&marks_topic, 0, Offset::OffsetTail(1))
                    .map_err(client(format!("assigning {marks_topic}/0")))?;
                Some(marks_topic)
            } else {
                info!(topic = %marks_topic, "no watermark topic (capture makes it): the lake and loaded stages report no freshness until the sink half restarts after it");
                None
            }
        } else {
            None
        };
        consumer
            .assign(&tpl)
            .map_err(client("assigning the table topics".into()))?;
        let compression = match settings.compression {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("freshet {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Batcher {
            k,
            settings,
            store,
            consumer,
            schemas: Schemas::new(k).map_err(|e| {
                BatcherError::Kafka(kafka::Error::Config(format!("schema lookup: {e}")))
            })?,
            by_topic: settings
                .tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t.topic.clone(), i))
                .collect(),
            shapes: HashMap::new(),
            consumed: settings
                .tables
                .iter()
                .map(|t| {
                    metrics::counter!(names::BATCHER_RECORDS_CONSUMED_TOTAL, "table" => t.name.clone())
                })
                .collect(),
            resumed,
            files: BTreeMap::new(),
            props,
            summary: Summary::default(),
            progress,
            marks_topic,
            marks: VecDeque::new(),
            lake: vec![None; settings.tables.len()],
            partitions: table_partitions,
            next: next_offsets,
        })
    }

    async fn consume(&mut self, mut stopped: watch::Receiver<bool>) -> Result<(), BatcherError> {
        // The open file due first decides when to wake, so each closes on time, idle or not;
        // one timer, moved only when that time changes.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let next_due = self.files.values().map(|f| f.due).min();
            if next_due != armed {
                if let Some(at) = next_due {
                    timer.as_mut().reset(at.into());
                }
                armed = next_due;
            }
            tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => {
                    self.close_all("shutdown").await?;
                    info!(objects = self.summary.objects, rows = self.summary.rows, "batcher stopped; every open file is in the lake");
                    return Ok(());
                }
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    let due: Vec<_> = self
                        .files
                        .iter()
                        .filter(|(_, f)| f.due <= Instant::now())
                        .map(|(key, _)| *key)
                        .collect();
                    for key in due {
                        self.close(key, "age").await?;
                    }
                    self.settle();
                }
                message = self.consumer.recv() => {
                    let message = message.map_err(|e| self.consume_error(e))?;
                    let owned = message.detach();
                    self.take(owned).await?;
                }
            }
        }
    }

    /// Adds one record to its file; closes the file when it is full.
    async fn take(&mut self, m: OwnedMessage) -> Result<(), BatcherError> {
        let Some(&table) = self.by_topic.get(m.topic()) else {
            if self.marks_topic.as_deref() == Some(m.topic()) {
                self.mark(&m);
            }
            return Ok(());
        };
        let (partition, offset) = (m.partition(), m.offset());
        let key = (table, partition);
        self.next.insert(key, offset + 1);
        self.summary.records += 1;
        self.summary.consumed_bytes += m.payload().map_or(0, |p| p.len() as u64);
        let Some(payload) = m.payload() else {
            // A tombstone: nothing to write, but the open file's span covers it.
            if let Some(f) = self.files.get_mut(&key) {
                f.span.last = offset;
            }
            return Ok(());
        };
        let payload_len = payload.len();
        let key_change = m.headers().is_some_and(|h| {
            h.iter()
                .any(|h| h.key == "__debezium.oldkey" || h.key == "__debezium.newkey")
        });
        let record_error = |why: String| BatcherError::Record {
            topic: m.topic().to_owned(),
            partition,
            offset,
            why,
        };
        let (schema, value) = match self.schemas.decode(self.k, payload).await {
            Ok(decoded) => decoded,
            Err(DecodeError::Unavailable(why)) => return Err(BatcherError::Schemas(why)),
            Err(DecodeError::Record(why)) => return Err(record_error(why)),
        };
        // Keyed by the schema's address: the lookup keeps every schema it hands out alive.
        let shape = match self.shapes.entry(Arc::as_ptr(&schema) as usize) {
            std::collections::hash_map::Entry::Occupied(e) => Arc::clone(&e.get().1),
            std::collections::hash_map::Entry::Vacant(e) => {
                let shape = RowShape::of(&schema).map_err(|e| record_error(e.to_string()))?;
                Arc::clone(&e.insert((Arc::clone(&schema), Arc::new(shape))).1)
            }
        };
        let change = read_shaped(&shape, &value).map_err(|e| record_error(e.to_string()))?;
        self.consumed[table].increment(1);
        // A new schema (ALTER TABLE) starts a new file: one file, one column set.
        if self
            .files
            .get(&key)
            .is_some_and(|f| !Arc::ptr_eq(&f.schema, &schema))
        {
            self.close(key, "schema").await?;
        }
        if !self.files.contains_key(&key) {
            let t = &self.settings.tables[table];
            let layout = Layout::new(shape.kinds(), t.eav);
            let mut writer =
                ArrowWriter::try_new(Vec::new(), layout.schema(), Some(self.props.clone()))
                    .map_err(|e| self.parquet_error(table, e))?;
            let description = Description::of(&t.name, &shape, t.eav);
            writer.append_key_value_metadata(KeyValue::new(
                columns::DESCRIPTION_KEY.to_owned(),
                serde_json::to_string(&description).map_err(|e| self.parquet_error(table, e))?,
            ));
            self.files.insert(
                key,
                OpenFile {
                    schema: schema.clone(),
                    layout,
                    writer,
                    pending: Vec::with_capacity(BATCH_ROWS),
                    pending_bytes: 0,
                    rows: 0,
                    span: Span {
                        partition,
                        first: offset,
                        last: offset,
                    },
                    first_commit_ms: change.commit_ts_ms,
                    oldest_commit_ms: change.commit_ts_ms,
                    due: due(change.commit_ts_ms, self.settings.tables[table].max_age),
                },
            );
        }
        let Some(file) = self.files.get_mut(&key) else {
            return Ok(());
        };
        file.span.last = offset;
        file.rows += 1;
        file.oldest_commit_ms = file.oldest_commit_ms.min(change.commit_ts_ms);
        file.pending.push(Row {
            change,
            partition,
            offset,
            key_change,
        });
        file.pending_bytes += payload_len;
        if file.pending.len() >= BATCH_ROWS || file.pending_bytes >= BATCH_BYTES {
            encode(file).map_err(|e| self.parquet_error(table, e))?;
            let file = &self.files[&key];
            let reason = if file.rows >= self.settings.max_rows {
                Some("rows")
            } else if file.size() >= self.settings.max_bytes {
                Some("bytes")
            } else {
                None
            };
            if let Some(reason) = reason {
                self.close(key, reason).await?;
            }
        } else if file.rows >= self.settings.max_rows {
            self.close(key, "rows").await?;
        }
        Ok(())
    }

    fn consume_error(&self, error: rdkafka::error::KafkaError) -> BatcherError {
        use rdkafka::types::RDKafkaErrorCode as Code;
        if matches!(
            error.rdkafka_error_code(),
            Some(Code::AutoOffsetReset | Code::OffsetOutOfRange)
        ) {
            return BatcherError::OutOfRange {
                error: error.to_string(),
                resume: self.resumed.join(", "),
            };
        }
        BatcherError::Kafka(kafka::Error::Client {
            brokers: self.k.brokers.0.clone(),
            what: "consuming the table topics".into(),
            error: Box::new(error),
        })
    }

    async fn close_all(&mut self, reason: &'static str) -> Result<(), BatcherError> {
        let open: Vec<_> = self.files.keys().copied().collect();
        for key in open {
            self.close(key, reason).await?;
        }
        self.settle();
        Ok(())
    }

    /// A mark from the watermark topic: the capture half had everything up to it in Kafka.
    /// A mark that cannot be read is passed over: the next one says as much.
    fn mark(&mut self, m: &OwnedMessage) {
        let Some(mark) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Mark>(p).ok())
        else {
            tracing::debug!(
                offset = m.offset(),
                "an unreadable watermark mark, passed over"
            );
            return;
        };
        let board = freshness::board();
        let snapshotting: BTreeSet<String> = self
            .settings
            .tables
            .iter()
            .filter(|t| !mark.covers(&t.name, &t.topic))
            .map(|t| t.name.clone())
            .collect();
        board.snapshotting_by_mark(&snapshotting);
        board.advance_all(Stage::Captured, mark.watermark, &snapshotting);
        board.advance_all(Stage::Kafka, mark.watermark, &snapshotting);
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(mark);
        self.settle();
    }

    /// Whether table `i`'s durable objects hold everything `mark` covers in the partitions
    /// read here: for each, the first offset not yet in an object is at or past the mark's.
    fn passed(&self, i: usize, mark: &Mark) -> bool {
        let topic = &self.settings.tables[i].topic;
        let offsets = mark.offsets.get(topic);
        self.partitions[i].iter().all(|&p| {
            let needed = offsets.and_then(|o| o.get(&p)).copied().unwrap_or(0);
            let durable = match self.files.get(&(i, p)) {
                Some(f) => f.span.first,
                None => self.next.get(&(i, p)).copied().unwrap_or(0),
            };
            durable >= needed
        })
    }

    /// Moves each table's lake watermark to the newest mark its objects have passed, and
    /// forgets the marks every table has passed.
    fn settle(&mut self) {
        if self.marks.is_empty() {
            return;
        }
        let mut oldest_needed = self.marks.len();
        for i in 0..self.settings.tables.len() {
            // Marks only grow, so the passed ones come first: a binary search, not a scan of
            // every mark each time a table catching up is asked.
            let Some(at) = self
                .marks
                .partition_point(|m| self.passed(i, m))
                .checked_sub(1)
            else {
                oldest_needed = 0;
                continue;
            };
            oldest_needed = oldest_needed.min(at);
            let t = &self.settings.tables[i];
            // Not while its snapshot runs: the objects hold the changes, not yet every row.
            if !self.marks[at].covers(&t.name, &t.topic) {
                continue;
            }
            let w = self.marks[at].watermark;
            if self.lake[i].is_some_and(|old| old >= w) {
                continue;
            }
            self.lake[i] = Some(w);
            freshness::board().advance(&t.name, Stage::Lake, w);
            if let Some(progress) = &self.progress {
                let _ = progress.send(Progress::Watermark {
                    dir: t.dir.clone(),
                    watermark: w,
                });
            }
        }
        self.marks.drain(..oldest_needed);
    }

    fn parquet_error(&self, table: usize, e: impl std::fmt::Display) -> BatcherError {
        BatcherError::Parquet {
            table: self.settings.tables[table].name.clone(),
            why: e.to_string(),
        }
    }

    /// Writes the file as one object and its manifest, then commits its offsets.
    async fn close(&mut self, key: (usize, i32), reason: &'static str) -> Result<(), BatcherError> {
        let Some(mut file) = self.files.remove(&key) else {
            return Ok(());
        };
        let table = &self.settings.tables[key.0];
        encode(&mut file).map_err(|e| self.parquet_error(key.0, e))?;
        let body = Bytes::from(
            file.writer
                .into_inner()
                .map_err(|e| self.parquet_error(key.0, e))?,
        );
        let bytes = body.len() as u64;
        let object = layout::object_key(
            &table.dir,
            &layout::date_of(file.first_commit_ms),
            file.span,
        );
        self.store.put(&object, body).await?;
        crate::crash::point("batcher.after_upload");
        let manifest = layout::manifest(&self.store.url(&object), bytes);
        self.store
            .put(&layout::manifest_key(&object), Bytes::from(manifest))
            .await?;
        let waited_ms = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(file.oldest_commit_ms);
        metrics::histogram!(names::BATCHER_COMMIT_TO_DURABLE_SECONDS, "table" => table.name.clone())
            .record(waited_ms.max(0) as f64 / 1000.0);
        metrics::counter!(names::BATCHER_ROWS_WRITTEN_TOTAL, "table" => table.name.clone())
            .increment(file.rows);
        metrics::counter!(names::BATCHER_FILES_WRITTEN_TOTAL, "table" => table.name.clone(), "reason" => reason)
            .increment(1);
        metrics::counter!(names::BATCHER_BYTES_WRITTEN_TOTAL, "table" => table.name.clone())
            .increment(bytes);
        if let Some(progress) = &self.progress {
            // A loader gone (its half restarting) finds the object in the lake on start.
            let _ = progress.send(Progress::Written(Written {
                dir: table.dir.clone(),
                key: object.clone(),
                span: file.span,
                bytes,
                oldest_commit_ms: file.oldest_commit_ms,
            }));
        }
        telemetry::emit(Event::FileWritten {
            table: table.name.clone(),
            key: object,
            rows: file.rows,
            bytes,
            reason,
        });
        self.summary.objects += 1;
        self.summary.rows += file.rows;
        self.summary.written_bytes += bytes;
        self.summary.largest = self.summary.largest.max(bytes);
        self.summary.smallest = match self.summary.smallest {
            0 => bytes,
            n => n.min(bytes),
        };
        // For lag tooling only: the lake, not this commit, is where the batcher resumes.
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&table.topic, key.1, Offset::Offset(file.span.last + 1))
            .is_ok()
        {
            if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(%error, topic = %table.topic, "offset commit (lag tooling only)");
            }
        }
        Ok(())
    }
}

/// When a file whose first row committed at `commit_ms` (Unix ms, the server's clock) must
/// close: `max_age` after the commit, but never sooner than [`MIN_FILE_AGE`] from now, so a
/// backlog is written in files of a second's rows rather than one per record.
fn due(commit_ms: i64, max_age: Duration) -> Instant {
    let lag = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(commit_ms);
    let wait = max_age
        .saturating_sub(Duration::from_millis(u64::try_from(lag).unwrap_or(0)))
        .max(MIN_FILE_AGE);
    // A wait past any clock's range (an age of centuries in the file) is a year.
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Encodes the file's pending rows into its row group.
fn encode(file: &mut OpenFile) -> Result<(), String> {
    if file.pending.is_empty() {
        return Ok(());
    }
    let batch = file
        .layout
        .batch(&file.pending)
        .map_err(|e| e.to_string())?;
    file.writer.write(&batch).map_err(|e| e.to_string())?;
    file.pending.clear();
    file.pending_bytes = 0;
    Ok(())
}

/// Per partition, the offset after the last one the table's objects hold; writes the
/// manifest of any object a crash left without one.
async fn resume_points(store: &Store, dir: &str) -> Result<HashMap<i32, i64>, StoreError> {
    let objects = store.list(&format!("{dir}/")).await?;
    let manifests: HashSet<&str> = objects
        .iter()
        .filter(|o| o.key.ends_with(".manifest"))
        .map(|o| o.key.as_str())
        .collect();
    let mut next: HashMap<i32, i64> = HashMap::new();
    for o in &objects {
        let Some(span) = layout::parse(&o.key) else {
            continue;
        };
        let n = next.entry(span.partition).or_insert(0);
        *n = (*n).max(span.last + 1);
        let manifest_key = layout::manifest_key(&o.key);
        if !manifests.contains(manifest_key.as_str()) {
            let manifest = layout::manifest(&store.url(&o.key), o.size);
            store.put(&manifest_key, Bytes::from(manifest)).await?;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_partitions_without_overlap() {
        let shares: Vec<Share> = ["0/3", "1/3", "2/3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for p in 0..32 {
            assert_eq!(
                shares.iter().filter(|s| s.takes(p)).count(),
                1,
                "partition {p}"
            );
        }
        for bad in ["3/3", "1/0", "1", "a/b", "-1/2"] {
            assert!(bad.parse::<Share>().is_err(), "{bad}");
        }
    }
}
