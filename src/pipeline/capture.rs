//! The capture half: source → transform → kafka (or source → jsonl), acknowledgements back,
//! heartbeats beside.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn, Instrument};

use super::{readiness, PipelineError};
use crate::change::SourceEvent;
use crate::config::{Pipeline, SnapshotMode};
use crate::jsonl::JsonlOutput;
use crate::kafka;
use crate::lsn::Lsn;
use crate::pg;
use crate::source::replication::{Capture, SnapshotLink, Stopped};
use crate::source::slot::SlotIdentity;
use crate::source::slot::{Found, SlotState};
use crate::source::snapshot::{self, Job, ProgressFile, TableProgress};
use crate::source::{heartbeat, publication, slot, SourceError};
use crate::state::{self, State};
use crate::transform::encoding::schema_topic;
use crate::transform::{eav, topic_name, Encoding, Transform, TransformError};

/// Events buffered between the source and the output; a full channel slows the WAL reader.
pub const EVENT_BUFFER: usize = 4096;
/// How long the output may take to drain and sync at shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long the final confirmation may take (the server may be the thing that is gone).
const FINISH_DEADLINE: Duration = Duration::from_secs(10);

/// Where captured changes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    /// The pipeline's Kafka topics, through the transform; snapshot progress lives in the
    /// state directory.
    Kafka { state_dir: PathBuf },
    /// One JSON line per change, for debugging and for capture without Kafka.
    Jsonl(PathBuf),
}

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("jsonl", path)) if !path.is_empty() => Ok(OutputSpec::Jsonl(PathBuf::from(path))),
            _ => Err(format!("{s:?}: expected jsonl:PATH")),
        }
    }
}

impl OutputSpec {
    /// Where the pipeline's own state lives: beside the jsonl file, or in the state directory
    /// under the slot's name.
    fn state_prefix(&self, slot: &str) -> PathBuf {
        match self {
            OutputSpec::Jsonl(path) => path.clone(),
            OutputSpec::Kafka { state_dir } => state_dir.join(slot),
        }
    }
}

/// Runs capture into `output` until `shutdown` or an error; returns the confirmed position.
pub async fn run(
    pipeline: &Pipeline,
    output: &OutputSpec,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Lsn, PipelineError> {
    let source = &pipeline.source;
    let span = tracing::info_span!("capture", pipeline = %pipeline.name, stage = "source");
    // Before anything is created on the servers: a state that cannot be kept stops here.
    let state = State::open(output.state_prefix(&source.slot)).map_err(SourceError::from)?;
    let identity_at = state.path("slot");
    let known: Option<SlotIdentity> = state::read(&identity_at).map_err(SourceError::from)?;
    let pg_config = source.url.to_config();
    let catalog = pg::connect(&pg_config).await.map_err(SourceError::from)?;
    publication::verify(&catalog, source).await?;
    let (output, resuming) = match output {
        OutputSpec::Jsonl(path) => {
            let (jsonl, resuming) = JsonlOutput::open(path)?;
            (CaptureOutput::Jsonl(jsonl), resuming)
        }
        OutputSpec::Kafka { .. } => {
            kafka_stages(pipeline, &catalog, Some(&state.path("topics"))).await?
        }
    };
    let found = slot::find(&catalog, source, known.as_ref(), resuming).await?;
    let resume_from = match &found {
        Found::Existing(state, _) => Some(state.confirmed_flush),
        Found::Missing { .. } => None,
    };
    let mut opening = Capture::open(&source.url, &source.into(), resume_from, None)
        .instrument(span.clone())
        .await?;
    let (slot_state, identity, exported) = match found {
        Found::Existing(state, identity) => (state, identity, None),
        Found::Missing { database } => {
            let created = opening.create_slot().await?;
            let identity = SlotIdentity {
                slot: source.slot.clone(),
                database,
                first_lsn: created.consistent_point,
            };
            let state = SlotState {
                confirmed_flush: created.consistent_point,
                created: true,
            };
            (state, identity, Some(created.snapshot))
        }
    };
    if known.is_none() {
        // Recorded before anything is read through the slot, so a later absence is a loss.
        state::write(&identity_at, &identity).map_err(SourceError::from)?;
    }
    let mut output = output;
    if let CaptureOutput::Kafka { transform, .. } = &mut output {
        let confirmed = slot_state.confirmed_flush;
        if let Some((eav, publish)) =
            attribute_catalog(pipeline, &catalog, confirmed, exported.as_deref()).await?
        {
            transform.set_catalog(eav, publish);
        }
    }
    // The exported snapshot ends here: the session starts streaming.
    let capture = opening
        .start(slot_state, catalog)
        .instrument(span.clone())
        .await?;

    // Snapshots: resume unfinished tables, start the ones never snapshotted (mode initial).
    let progress = ProgressFile::open(&state.path("snapshot"))?;
    // Room for every table at start, plus signals that arrive during a snapshot.
    let (jobs, jobs_rx) = mpsc::channel(source.tables.len() + 64);
    let (chunks_tx, chunks) = mpsc::channel(1);
    let mut running = std::collections::BTreeSet::new();
    for t in &source.tables {
        let table = t.value.clone();
        let name = table.to_string();
        let known = progress.progress.tables.get(&name);
        let job = match known {
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
            // Held until it ends, unless its rows were all delivered once already.
            if !known.is_some_and(TableProgress::ever_complete) {
                running.insert(name);
            }
            let _ = jobs.try_send(job);
        }
    }
    let (running, running_rx) = watch::channel(running);
    if let CaptureOutput::Kafka { producer, .. } = &mut output {
        let tables = source.tables.iter().map(|t| t.value.to_string()).collect();
        producer.follow_snapshots(tables, running_rx);
    }
    let tables = source.tables.iter().map(|t| t.value.clone()).collect();
    let run = snapshot::run_id();
    let mut capture = capture.with_snapshots(SnapshotLink {
        chunks,
        jobs,
        progress,
        tables,
        ready: None,
        run,
        running,
    });
    let snapshot_span =
        tracing::info_span!("snapshot", pipeline = %pipeline.name, stage = "snapshot");
    let worker = snapshot::worker(
        pg_config.clone(),
        source.slot.clone(),
        run,
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
    let mut output_task = tokio::spawn(output.run(pipeline.name.clone(), events_rx, durable_tx));
    let heartbeat_task = tokio::spawn(heartbeat::run(pg_config, source.heartbeat_interval.0));

    readiness::heartbeats_every(source.heartbeat_interval.0);
    readiness::waiting(None);
    readiness::set(readiness::CAPTURE, Ok(()));
    let streamed = capture
        .stream(&events, &mut durable, &mut shutdown)
        .instrument(span.clone())
        .await;
    readiness::set(
        readiness::CAPTURE,
        Err("the replication stream ended: draining".into()),
    );
    match &streamed {
        Ok(Stopped::Shutdown) => info!(parent: &span, "shutdown requested: draining"),
        Ok(Stopped::EndOfStream) => warn!(parent: &span, "the server ended the replication stream"),
        Err(e) => error!(parent: &span, error = %e, "capture failed: draining what was read"),
    }
    snapshot_task.abort();
    heartbeat_task.abort();
    drop(events);
    let drained = match tokio::time::timeout(DRAIN_DEADLINE, &mut output_task).await {
        Err(_) => {
            output_task.abort();
            return Err(PipelineError::DrainTimeout(DRAIN_DEADLINE));
        }
        Ok(Err(join)) => Err(PipelineError::OutputTask(join.to_string())),
        Ok(Ok(result)) => result.map(|_| ()),
    };
    let last_durable = *durable.borrow();
    // Confirm what is durable even when the stream failed: it is safe, and saves a replay.
    let confirmed = match tokio::time::timeout(
        FINISH_DEADLINE,
        capture.finish(last_durable).instrument(span),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(SourceError::ConfirmTimeout {
            lsn: last_durable,
            after: FINISH_DEADLINE,
        }),
    };
    // The output's own failure is the cause when the source only saw it stop acknowledging.
    match (streamed, drained) {
        (Err(SourceError::OutputGone(_)) | Ok(_), Err(output)) => Err(output),
        (Err(source), _) => Err(source.into()),
        // Nobody asked it to stop: a restart (exit 75) resumes from what was confirmed.
        (Ok(Stopped::EndOfStream), Ok(())) => Err(SourceError::StreamEnded.into()),
        (Ok(Stopped::Shutdown), Ok(())) => Ok(confirmed?),
    }
}

pub(crate) enum CaptureOutput {
    Jsonl(JsonlOutput),
    Kafka {
        transform: Box<Transform>,
        producer: kafka::produce::Producer,
    },
}

impl CaptureOutput {
    /// Runs the output side until the events end; publishes durable commit positions. Returns
    /// the records (lines) written.
    pub(crate) async fn run(
        self,
        pipeline: String,
        events: mpsc::Receiver<SourceEvent>,
        durable: watch::Sender<Lsn>,
    ) -> Result<u64, PipelineError> {
        match self {
            CaptureOutput::Jsonl(jsonl) => {
                let span = tracing::info_span!("output", %pipeline, stage = "jsonl");
                Ok(jsonl.run(events, durable).instrument(span).await?)
            }
            CaptureOutput::Kafka {
                transform,
                producer,
            } => {
                let (records, records_rx) = mpsc::channel(RECORD_BUFFER);
                let t_span = tracing::info_span!("transform", %pipeline, stage = "transform");
                let k_span = tracing::info_span!("kafka", %pipeline, stage = "kafka");
                let (transformed, produced) = tokio::join!(
                    transform.run(events, records).instrument(t_span),
                    producer.run(records_rx, durable).instrument(k_span),
                );
                // The producer's failure is the cause when the transform only saw it stop.
                match (transformed, produced) {
                    (_, Err(e)) => Err(e.into()),
                    (Err(e), Ok(_)) => Err(e.into()),
                    (Ok(()), Ok(delivered)) => Ok(delivered),
                }
            }
        }
    }
}

/// Records buffered between the transform and the producer.
const RECORD_BUFFER: usize = 1024;

/// Topics, schema encoding, the attribute catalog and the producer; and whether the topics
/// already hold data (then a missing slot is lost, never recreated).
pub(crate) async fn kafka_stages(
    pipeline: &Pipeline,
    catalog: &tokio_postgres::Client,
    topics_state: Option<&std::path::Path>,
) -> Result<(CaptureOutput, bool), PipelineError> {
    let Some(k) = &pipeline.kafka else {
        return Err(PipelineError::Config(
            "the pipeline has no kafka section: add one, or run with --output jsonl:PATH".into(),
        ));
    };
    let mut topics: Vec<(String, bool)> = pipeline
        .source
        .tables
        .iter()
        .map(|t| {
            (
                topic_name(&k.topic_prefix, &t.value.schema, &t.value.table),
                false,
            )
        })
        .collect();
    let data_topics: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
    if k.schema_registry.is_none() {
        topics.push((schema_topic(&k.topic_prefix), true));
    }
    if pipeline.transform.eav.is_some() {
        topics.push((eav::state_topic(&k.topic_prefix), true));
    }
    topics.push((crate::freshness::topic(&k.topic_prefix), true));
    if pipeline.transform.provide_transaction_metadata {
        topics.push((crate::transform::transaction::topic(&k.topic_prefix), false));
    }
    let partitions = kafka::ensure_topics(k, &topics).await?;
    // Keys are placed by the partition count they were first written with: a count changed
    // since (while Freshet was down) stops the start, with what to do.
    if let Some(at) = topics_state {
        let recorded: Option<BTreeMap<String, i32>> = state::read(at).map_err(SourceError::from)?;
        for (topic, was) in recorded.iter().flatten() {
            if let Some(&now) = partitions.get(topic).filter(|&&now| now != *was) {
                return Err(kafka::Error::PartitionsChanged {
                    topic: topic.clone(),
                    was: *was,
                    now,
                    state: at.display().to_string(),
                }
                .into());
            }
        }
        let counts: BTreeMap<&String, &i32> = partitions.iter().collect();
        state::write(at, &counts).map_err(SourceError::from)?;
    }
    let state_hint = topics_state.map_or("the recorded partition counts".into(), |p| {
        p.display().to_string()
    });
    let resuming = kafka::holds_data(k, &data_topics).await?;
    let mut encoding = Encoding::from_config(k).map_err(TransformError::from)?;
    if k.schema_registry.is_none() && resuming {
        let topic = schema_topic(&k.topic_prefix);
        let published = kafka::tail::read_all(k, &topic)
            .await
            .map_err(PipelineError::Restore)?;
        encoding.remember(published.iter().filter_map(|r| r.value.as_deref()));
    }
    let primary_keys = primary_keys(catalog, &pipeline.source.tables).await?;
    let captured = pipeline
        .source
        .tables
        .iter()
        .map(|t| (t.value.schema.clone(), t.value.table.clone()))
        .collect();
    let db: String = catalog
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|error| SourceError::Catalog {
            what: "reading the database's name".into(),
            error,
        })?
        .get(0);
    let transform = Transform::new(
        &k.topic_prefix,
        &db,
        encoding,
        primary_keys,
        captured,
        &pipeline.transform,
    );
    let producer = kafka::produce::Producer::new(k, partitions, state_hint)?;
    Ok((
        CaptureOutput::Kafka {
            transform: Box::new(transform),
            producer,
        },
        resuming,
    ))
}

/// The attribute catalog for a transform about to stream from the slot's `confirmed`
/// position (None without an EAV mapping), and whether its state must be published.
/// - A slot just created: the database as of the slot's start, through the snapshot its
///   creation `exported`; published, replacing whatever an earlier slot left in the topic.
/// - Otherwise the state topic, when it holds a complete write: each attribute as it was at
///   `confirmed`.
/// - Otherwise (the topic lost, or its first write cut short) the database as it is now,
///   published: names of changes the slot still holds may then be today's, which is logged.
pub(crate) async fn attribute_catalog(
    pipeline: &Pipeline,
    catalog: &tokio_postgres::Client,
    confirmed: Lsn,
    exported: Option<&str>,
) -> Result<Option<(eav::Catalog, bool)>, PipelineError> {
    let (Some(eav), Some(k)) = (&pipeline.transform.eav, &pipeline.kafka) else {
        return Ok(None);
    };
    let what = format!("reading the attribute catalog {}", eav.catalog.value);
    let err = |error| SourceError::Catalog {
        what: what.clone(),
        error,
    };
    if let Some(snapshot) = exported {
        catalog
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
            ))
            .await
            .map_err(err)?;
        let loaded = eav::load(catalog, eav).await;
        let _ = catalog.batch_execute("COMMIT").await;
        let initial = loaded.map_err(err)?;
        info!(
            attributes = initial.len(),
            "attribute catalog read as of the slot's start"
        );
        return Ok(Some((eav::Catalog::loaded(eav, initial), true)));
    }
    let topic = eav::state_topic(&k.topic_prefix);
    let records = kafka::tail::read_all(k, &topic)
        .await
        .map_err(PipelineError::Restore)?;
    let complete = records
        .iter()
        .any(|r| r.key.as_deref() == Some(eav::COMPLETE_KEY));
    if complete {
        let histories = records
            .iter()
            .filter(|r| r.key.as_deref() != Some(eav::COMPLETE_KEY))
            .filter_map(|r| Some((r, r.value.as_deref()?)))
            .map(|(r, value)| {
                serde_json::from_slice::<eav::History>(value).map_err(|e| {
                    PipelineError::Restore(kafka::tail::TailError::Record {
                        topic: topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                        why: format!("not an attribute history: {e}"),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let restored = eav::Catalog::restored(eav, histories, confirmed);
        info!(%topic, attributes = restored.len(), %confirmed, "attribute catalog restored as of the confirmed position");
        return Ok(Some((restored, false)));
    }
    warn!(%topic, "no complete attribute state in its topic: starting from the catalog as it is now; changes the slot still holds are named with today's names");
    let initial = eav::load(catalog, eav).await.map_err(err)?;
    info!(attributes = initial.len(), "attribute catalog loaded");
    Ok(Some((eav::Catalog::loaded(eav, initial), true)))
}

/// Each captured table's primary-key columns, in key order (a FULL-identity table's Relation
/// message does not say which columns they are).
async fn primary_keys(
    catalog: &tokio_postgres::Client,
    tables: &[serde_saphyr::Spanned<crate::config::TableName>],
) -> Result<std::collections::HashMap<(String, String), Vec<String>>, PipelineError> {
    let mut keys = std::collections::HashMap::new();
    for t in tables {
        let t = &t.value;
        let rows = catalog
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                 WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&t.schema, &t.table],
            )
            .await
            .map_err(|error| SourceError::Catalog {
                what: format!("reading the primary key of {t}"),
                error,
            })?;
        if !rows.is_empty() {
            keys.insert(
                (t.schema.clone(), t.table.clone()),
                rows.iter().map(|r| r.get(0)).collect(),
            );
        }
    }
    Ok(keys)
}
