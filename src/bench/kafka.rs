//! One WAL → Kafka run for `scripts/bench-kafka.sh`: stream a slot up to an LSN through the
//! real transform and producer into the pipeline's topics, and report records, time and peak
//! memory. The script runs `pg_recvlogical` on a copy of the same slot beside it.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::Pipeline;
use crate::lsn::Lsn;
use crate::pg;
use crate::pipeline::{
    attribute_catalog, kafka_stages, CaptureOutput, PipelineError, EVENT_BUFFER,
};
use crate::source::replication::{Capture, StreamSettings};
use crate::source::slot::SlotState;
use crate::source::SourceError;

pub struct KafkaRun {
    pub records: u64,
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
}

pub async fn run(pipeline: &Pipeline, slot: &str, until: Lsn) -> Result<KafkaRun, PipelineError> {
    let source = &pipeline.source;
    let catalog = pg::connect(&source.url.to_config())
        .await
        .map_err(SourceError::from)?;
    let confirmed_flush = crate::source::slot::confirmed(&catalog, slot).await?;
    // A benchmark keeps no state: its topics are made for the run.
    let (mut output, _) = kafka_stages(pipeline, &catalog, None).await?;
    if let CaptureOutput::Kafka { transform, .. } = &mut output {
        // Its state is not published: a benchmark counts the table records only.
        if let Some((eav, _)) = attribute_catalog(pipeline, &catalog, confirmed_flush, None).await?
        {
            transform.set_catalog(eav, false);
        }
    }
    let started = Instant::now();
    let settings = StreamSettings {
        slot: slot.to_owned(),
        ..StreamSettings::from(source)
    };
    let state = SlotState {
        confirmed_flush,
        created: false,
    };
    let mut capture = Capture::start(&source.url, &settings, state, catalog, Some(until)).await?;
    let (events, events_rx) = mpsc::channel(EVENT_BUFFER);
    let (durable_tx, mut durable) = watch::channel(confirmed_flush);
    let task = tokio::spawn(output.run(pipeline.name.clone(), events_rx, durable_tx));
    let (_keep, mut never) = watch::channel(false);
    capture.stream(&events, &mut durable, &mut never).await?;
    drop(events);
    let records = task
        .await
        .map_err(|e| PipelineError::OutputTask(e.to_string()))??;
    let elapsed = started.elapsed();
    let last = *durable.borrow();
    capture.finish(last).await?;
    Ok(KafkaRun {
        records,
        elapsed,
        peak_rss_kib: super::capture::peak_rss_kib(),
    })
}
