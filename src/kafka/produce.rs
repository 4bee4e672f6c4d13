//! The produce loop: records in, acknowledgement watermark out.
//!
//! Sends are kept in a queue in the order the transform emitted them, with each commit as a
//! marker between its transaction's records and the next. Only the front of the queue is
//! awaited: when a commit marker reaches the front, every record before it was delivered,
//! so its end position is durable. Bytes in the queue are bounded; when full, the loop stops
//! taking input and the WAL reader waits behind it.
//!
//! Each commit reaching the loop moves every table's `captured` watermark; each reaching the
//! front moves `kafka`, and, at most every [`MARK_EVERY`], is published on the watermark
//! topic with the offsets it covers (the end of each partition up to its transaction), so
//! the sink half knows how far its stages are, whichever process runs them.
//!
//! A table whose snapshot is still running is not complete at any stage, whatever commit
//! passes: its watermarks stay where they are (none, for a first snapshot) until the
//! snapshot's last rows are delivered, and the marks leave it out of their `complete` list.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{partition, Context, Error};
use crate::change::PgTimestamp;
use crate::freshness::{self, Stage, Watermark};
use crate::lsn::Lsn;
use crate::telemetry::{self, names, Event};
use crate::transform::{Output, Record, Routing};

/// What librdkafka's copy of a record (message, headers) and the pending delivery cost
/// beyond its payload and key: counted so the in-flight bound is a bound on memory.
const RECORD_OVERHEAD: usize = 512;
/// How often a stalled broker is reported.
const STALL_REPORT: Duration = Duration::from_secs(5);
/// How often the topics' partition counts are compared with the ones records are routed by.
const PARTITION_CHECK: Duration = Duration::from_secs(30);
/// How often a delivered commit is published on the watermark topic, at most.
const MARK_EVERY: Duration = Duration::from_millis(200);

enum Pending {
    Delivery {
        future: DeliveryFuture,
        bytes: usize,
        topic: Arc<str>,
    },
    Commit {
        end: Lsn,
        commit_ts: PgTimestamp,
        /// When the commit reached this stage (Unix µs): the capture side of the latency.
        arrived_us: i64,
    },
}

pub struct Producer {
    producer: FutureProducer<Context>,
    partitions: HashMap<String, i32>,
    max_in_flight_bytes: usize,
    brokers: String,
    /// Where the partition counts are recorded, for the error that says what to do.
    partitions_state: String,
    marks_topic: String,
    /// Per topic and partition, the offset after the last record delivered in order: at
    /// start, the partitions' ends.
    ends: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The captured tables, and those of them whose snapshot is running (see
    /// [`Producer::follow_snapshots`]); without them every table is complete.
    snapshots: Option<(Vec<String>, watch::Receiver<BTreeSet<String>>)>,
}

impl Producer {
    /// `partitions_state` names where the partition counts are recorded (for the error a
    /// changed count stops with).
    pub fn new(
        kafka: &crate::config::Kafka,
        partitions: HashMap<String, i32>,
        partitions_state: String,
    ) -> Result<Producer, Error> {
        let producer: FutureProducer<Context> = super::producer_config(kafka)?
            .create_with_context(super::Context::new(kafka)?)
            .map_err(|error| Error::Client {
                brokers: kafka.brokers.0.clone(),
                what: "creating the producer".into(),
                error: Box::new(error),
            })?;
        // Learn every topic's leaders now: a first record to a topic the producer has no
        // metadata for otherwise waits for a refresh, a second of start-up latency.
        for topic in partitions.keys() {
            if let Err(error) = tokio::task::block_in_place(|| {
                producer
                    .client()
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
            }) {
                warn!(%topic, %error, "no metadata for the topic yet; the first records wait for it");
            }
        }
        // What is in the topics now came before anything this run produces.
        let mut ends: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for (topic, &n) in &partitions {
            for p in 0..n {
                let high = tokio::task::block_in_place(|| {
                    producer
                        .client()
                        .fetch_watermarks(topic, p, Duration::from_secs(10))
                })
                .map_err(|error| Error::Client {
                    brokers: kafka.brokers.0.clone(),
                    what: format!("reading the offsets of {topic}/{p}"),
                    error: Box::new(error),
                })?
                .1;
                ends.entry(topic.clone()).or_default().insert(p, high);
            }
        }
        Ok(Producer {
            producer,
            partitions,
            max_in_flight_bytes: usize::try_from(kafka.producer.max_in_flight_bytes)
                .unwrap_or(usize::MAX),
            brokers: kafka.brokers.0.clone(),
            partitions_state,
            marks_topic: freshness::topic(&kafka.topic_prefix),
            ends,
            snapshots: None,
        })
    }

    /// Follows which of `tables` are being snapshotted: they are held at every stage.
    pub fn follow_snapshots(
        &mut self,
        tables: Vec<String>,
        running: watch::Receiver<BTreeSet<String>>,
    ) {
        self.snapshots = Some((tables, running));
    }

    /// Takes into `held` the tables being snapshotted now, when that changed (a load of an
    /// atomic otherwise: it is asked at every commit), and shows them on the board.
    fn follow(&mut self, held: &mut BTreeSet<String>) {
        let Some((_, running)) = &mut self.snapshots else {
            return;
        };
        if running.has_changed().unwrap_or(false) {
            *held = running.borrow_and_update().clone();
            freshness::board().snapshotting_here(held);
        }
    }

    /// Each topic's partition count, as records are routed by.
    pub fn partitions(&self) -> &HashMap<String, i32> {
        &self.partitions
    }

    /// Produces until the input closes and everything sent is delivered; publishes each
    /// delivered commit's end position on `durable`.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Output>,
        durable: watch::Sender<Lsn>,
    ) -> Result<u64, Error> {
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut bytes = 0usize;
        let mut delivered = 0u64;
        let mut open = true;
        let mut waiting_since: Option<Instant> = None;
        // Whether a stall was reported (so its end is too).
        let mut stalled = false;
        let mut latency = Latency::new();
        let mut marked = Instant::now() - MARK_EVERY;
        let mut snapshotting = BTreeSet::new();
        if let Some((_, running)) = &mut self.snapshots {
            running.mark_changed();
        }
        self.follow(&mut snapshotting);
        let mut report = tokio::time::interval(STALL_REPORT);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (changed_tx, mut changed) = mpsc::channel(1);
        let _watch = AbortOnDrop(tokio::spawn(watch_partitions(
            self.producer.clone(),
            self.partitions.clone(),
            self.partitions_state.clone(),
            changed_tx,
        )));
        loop {
            while let Some(&Pending::Commit {
                end,
                commit_ts,
                arrived_us,
            }) = pending.front()
            {
                durable.send_replace(end);
                latency.record(commit_ts, arrived_us);
                pending.pop_front();
                let w = Watermark::of_commit(end, commit_ts);
                // Read after the commit was delivered: a snapshot ends only once its last
                // rows are, so a table left out of this set is complete at `w`.
                self.follow(&mut snapshotting);
                freshness::board().advance_all(Stage::Kafka, w, &snapshotting);
                if marked.elapsed() >= MARK_EVERY {
                    marked = Instant::now();
                    self.mark(w, &snapshotting);
                }
            }
            if !open && pending.is_empty() {
                latency.report_total();
                return Ok(delivered);
            }
            let room = bytes < self.max_in_flight_bytes;
            let front = async {
                match pending.front_mut() {
                    Some(Pending::Delivery { future, .. }) => future.await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(e) = changed.recv() => return Err(e),
                // First, so a steady stream of input cannot starve the reports.
                _ = report.tick() => {
                    latency.report_window();
                    metrics::gauge!(names::KAFKA_IN_FLIGHT_RECORDS).set(pending.len() as f64);
                    if let Some(Pending::Delivery { topic, .. }) = pending.front() {
                        let since = *waiting_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= STALL_REPORT {
                            telemetry::emit(Event::Stalled {
                                stage: "kafka",
                                endpoint: self.brokers.clone(),
                                waited: since.elapsed(),
                                error: format!(
                                    "{} records ({bytes} bytes) in flight, the oldest to {topic}",
                                    pending.len()
                                ),
                            });
                            stalled = true;
                        }
                    } else {
                        waiting_since = None;
                    }
                }
                result = front => {
                    let Some(Pending::Delivery { bytes: b, topic, .. }) = pending.pop_front() else {
                        continue;
                    };
                    match result {
                        Ok(Ok(d)) => {
                            tracing::debug!(%topic, partition = d.partition, offset = d.offset, "delivered");
                            // Per record: no allocation unless the topic is new.
                            let ends = match self.ends.get_mut(&*topic) {
                                Some(ends) => ends,
                                None => self.ends.entry(topic.to_string()).or_default(),
                            };
                            let end = ends.entry(d.partition).or_default();
                            *end = (*end).max(d.offset + 1);
                            bytes -= b;
                            delivered += 1;
                            metrics::counter!(names::KAFKA_RECORDS_DELIVERED_TOTAL).increment(1);
                            if let Some(since) = waiting_since.take() {
                                if std::mem::take(&mut stalled) {
                                    telemetry::emit(Event::Recovered {
                                        stage: "kafka",
                                        endpoint: self.brokers.clone(),
                                        waited: since.elapsed(),
                                    });
                                }
                            }
                        }
                        Ok(Err((error, _))) => return Err(self.failure(&topic, error)),
                        Err(_) => return Err(self.failure(&topic, KafkaError::Canceled)),
                    }
                }
                next = input.recv(), if open && room => match next {
                    None => open = false,
                    Some(Output::Commit { end_lsn, commit_ts }) => {
                        let arrived_us = chrono::Utc::now().timestamp_micros();
                        self.follow(&mut snapshotting);
                        freshness::board().advance_all(
                            Stage::Captured,
                            Watermark::of_commit(end_lsn, commit_ts),
                            &snapshotting,
                        );
                        // Commits with no record between them (heartbeats, empty or skipped
                        // transactions) collapse into the last: the queue cannot grow with
                        // them while a delivery is stuck.
                        match pending.back_mut() {
                            Some(Pending::Commit { end, commit_ts: ts, arrived_us: at }) => {
                                (*end, *ts, *at) = (end_lsn, commit_ts, arrived_us);
                            }
                            _ => pending.push_back(Pending::Commit {
                                end: end_lsn,
                                commit_ts,
                                arrived_us,
                            }),
                        }
                    }
                    Some(Output::Record(record)) => {
                        bytes += self.send(record, &mut pending).await?;
                    }
                },
            }
        }
    }

    /// Hands one record to librdkafka.
    async fn send(&self, r: Record, pending: &mut VecDeque<Pending>) -> Result<usize, Error> {
        let mut headers = OwnedHeaders::new_with_capacity(2 + r.headers.len())
            .insert(Header {
                key: "freshet.lsn",
                value: Some(&r.commit_lsn.to_string()),
            })
            .insert(Header {
                key: "freshet.seq",
                value: Some(&r.seq.to_string()),
            });
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let partition = match r.routing {
            // Placed here, by the count recorded for the topic, not by librdkafka's view of
            // the topic: a count changed behind Freshet's back moves no key.
            Routing::ByKey => match (&r.key, self.partitions.get(&*r.topic)) {
                (Some(key), Some(&n)) => Some(partition::for_key(key, n)),
                _ => None,
            },
            Routing::Partition(p) => Some(p),
        };
        let size = r.value.as_ref().map_or(0, Vec::len)
            + r.key.as_ref().map_or(0, Vec::len)
            + RECORD_OVERHEAD;
        let mut record = FutureRecord::to(&r.topic).headers(headers);
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let future = loop {
            match self.producer.send_result(record) {
                Ok(f) => break f,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(self.failure(&r.topic, error)),
            }
        };
        pending.push_back(Pending::Delivery {
            future,
            bytes: size,
            topic: r.topic.clone(),
        });
        Ok(size)
    }

    /// Publishes `w` with the offsets it covers. Best effort: the sink's watermarks wait for
    /// the next one when this one is lost; the data's delivery never waits for it.
    fn mark(&self, w: Watermark, snapshotting: &BTreeSet<String>) {
        let mark = freshness::Mark {
            watermark: w,
            offsets: self.ends.clone(),
            complete: self.snapshots.as_ref().map(|(tables, _)| {
                tables
                    .iter()
                    .filter(|t| !snapshotting.contains(*t))
                    .cloned()
                    .collect()
            }),
        };
        let Ok(payload) = serde_json::to_vec(&mark) else {
            return;
        };
        let record = FutureRecord::to(&self.marks_topic)
            .key(freshness::MARK_KEY)
            .payload(&payload);
        if let Err((error, _)) = self.producer.send_result(record) {
            tracing::debug!(%error, "watermark not published");
        }
    }

    fn failure(&self, topic: &str, error: KafkaError) -> Error {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Error::Fatal { code, reason };
        }
        Error::Delivery {
            topic: topic.to_owned(),
            error: Box::new(error),
        }
    }
}

/// Commit → delivery latency: how long after PostgreSQL committed a transaction its last
/// record was acknowledged by Kafka. Logged per report window and in total at the end.
struct Latency {
    window: hdrhistogram::Histogram<u64>,
    total: hdrhistogram::Histogram<u64>,
    /// From the second report window on: without start-up (snapshot, first metadata
    /// requests of each topic, the backlog since the last run).
    steady: hdrhistogram::Histogram<u64>,
    /// Commit → arrival at this stage, steady: what PostgreSQL's decoding and the capture
    /// side add before the producer sees the transaction.
    steady_arrival: hdrhistogram::Histogram<u64>,
    windows: u64,
}

impl Latency {
    fn new() -> Latency {
        // Microseconds, 3 significant digits, up to an hour.
        let h =
            || hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Latency {
            window: h(),
            total: h(),
            steady: h(),
            steady_arrival: h(),
            windows: 0,
        }
    }

    fn record(&mut self, commit_ts: PgTimestamp, arrived_us: i64) {
        // Snapshot reads and heartbeats carry real commit times too; clock skew between the
        // server and this host would show here, never as a negative value.
        let now_us = chrono::Utc::now().timestamp_micros();
        let commit_us = crate::change::unix_micros(commit_ts);
        let since = |t: i64| {
            u64::try_from(t - commit_us)
                .unwrap_or(0)
                .clamp(1, 3_600_000_000)
        };
        let us = since(now_us);
        metrics::histogram!(names::KAFKA_COMMIT_TO_DELIVERY_SECONDS).record(us as f64 / 1e6);
        self.window.saturating_record(us);
        self.total.saturating_record(us);
        if self.windows > 0 {
            self.steady.saturating_record(us);
            self.steady_arrival.saturating_record(since(arrived_us));
        }
    }

    fn report_window(&mut self) {
        if self.window.is_empty() {
            return;
        }
        self.windows += 1;
        let ms = |v: u64| v as f64 / 1000.0;
        info!(
            transactions = self.window.len(),
            p50_ms = ms(self.window.value_at_quantile(0.5)),
            p99_ms = ms(self.window.value_at_quantile(0.99)),
            max_ms = ms(self.window.max()),
            "commit to delivery latency"
        );
        self.window.reset();
    }

    fn report_total(&self) {
        if self.total.is_empty() {
            return;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        info!(
            transactions = self.total.len(),
            p50_ms = ms(self.total.value_at_quantile(0.5)),
            p99_ms = ms(self.total.value_at_quantile(0.99)),
            max_ms = ms(self.total.max()),
            steady_transactions = self.steady.len(),
            steady_p50_ms = ms(self.steady.value_at_quantile(0.5)),
            steady_p99_ms = ms(self.steady.value_at_quantile(0.99)),
            steady_max_ms = ms(self.steady.max()),
            steady_arrival_p50_ms = ms(self.steady_arrival.value_at_quantile(0.5)),
            steady_arrival_p99_ms = ms(self.steady_arrival.value_at_quantile(0.99)),
            "commit to delivery latency since start"
        );
    }
}

/// Compares each topic's partition count with `routed` every [`PARTITION_CHECK`]; sends the
/// error for the first that changed. A failed metadata request is retried at the next check
/// (an outage is reported by the produce loop).
async fn watch_partitions(
    producer: FutureProducer<Context>,
    routed: HashMap<String, i32>,
    state: String,
    changed: mpsc::Sender<Error>,
) {
    let mut tick = tokio::time::interval(PARTITION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let producer = producer.clone();
        let topics: Vec<String> = routed.keys().cloned().collect();
        let counts = tokio::task::spawn_blocking(move || {
            topics
                .into_iter()
                .filter_map(|topic| {
                    let metadata = producer
                        .client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(10))
                        .ok()?;
                    let count = metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| t.partitions().len())?;
                    Some((topic, i32::try_from(count).ok()?))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (topic, now) in counts {
            let was = routed.get(&topic).copied().unwrap_or(now);
            // A topic that shows no partitions is a metadata hiccup, not a change.
            if now != was && now > 0 {
                let _ = changed
                    .send(Error::PartitionsChanged {
                        topic,
                        was,
                        now,
                        state: state.clone(),
                    })
                    .await;
                return;
            }
        }
    }
}

/// Aborts a task when the produce loop ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
