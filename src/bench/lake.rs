//! One Kafka → lake run for `scripts/bench-lake.sh`: the batcher reads the pipeline's table
//! topics from the start into a fresh local lake until they go quiet, and reports records,
//! bytes, objects, time and peak memory. The script fills the topics with `freshet bench
//! kafka` first, so the capture side's rate on the same data is printed beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::batcher::{self, Settings, Summary};
use crate::config::Pipeline;
use crate::pipeline::PipelineError;
use crate::store::Store;

/// How long the topics stay quiet before the run counts them read.
const QUIET: Duration = Duration::from_secs(3);

pub struct LakeRun {
    /// The same topics read by a consumer that decodes nothing (the broker's own pace).
    pub raw_records: u64,
    pub raw_elapsed: Duration,
    pub summary: Summary,
    /// Without the final quiet wait.
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
}

pub async fn run(pipeline: &Pipeline, lake: &Path) -> Result<LakeRun, PipelineError> {
    let (Some(k), Some(mut settings)) = (&pipeline.kafka, Settings::from_pipeline(pipeline)) else {
        return Err(PipelineError::Config(
            "bench lake needs the pipeline's kafka and batcher sections".into(),
        ));
    };
    // A consumer group of its own: the run commits offsets like the real batcher.
    settings.group = format!("{}-bench", settings.group);
    let store = Store::open(&format!("file://{}", lake.display()), &Default::default()).await?;
    let topics: Vec<String> = settings.tables.iter().map(|t| t.topic.clone()).collect();
    let (raw_records, raw_elapsed) = read_raw(k, &topics).await?;
    let started = Instant::now();
    let summary = batcher::drain(k, &settings, &store, QUIET).await?;
    Ok(LakeRun {
        raw_records,
        raw_elapsed,
        summary,
        elapsed: started.elapsed().saturating_sub(QUIET),
        peak_rss_kib: super::capture::peak_rss_kib(),
    })
}

/// Reads `topics` from the start with the batcher's fetch settings and counts the records:
/// the reference the batcher's rate is quoted against.
async fn read_raw(
    k: &crate::config::Kafka,
    topics: &[String],
) -> Result<(u64, Duration), PipelineError> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};
    let client = |what: &str| {
        let (brokers, what) = (k.brokers.0.clone(), what.to_owned());
        move |error| crate::kafka::Error::Client {
            brokers,
            what,
            error: Box::new(error),
        }
    };
    let context = crate::kafka::Context::new(k)?;
    let consumer: StreamConsumer<crate::kafka::Context> = crate::kafka::client_config(k)?
        .set("group.id", "freshet-bench-raw")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("max.partition.fetch.bytes", "8388608")
        .create_with_context(context.clone())
        .map_err(client("creating a consumer"))?;
    tokio::task::block_in_place(|| context.authenticate(&k.brokers.0, consumer.client()))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = tokio::task::block_in_place(|| {
            consumer.fetch_metadata(Some(topic), Duration::from_secs(30))
        })
        .map_err(client("reading metadata"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .map_err(client("assigning"))?;
            }
        }
    }
    consumer.assign(&tpl).map_err(client("assigning"))?;
    let started = Instant::now();
    let mut records = 0u64;
    while let Ok(message) = tokio::time::timeout(QUIET, consumer.recv()).await {
        message.map_err(client("reading"))?;
        records += 1;
    }
    Ok((records, started.elapsed().saturating_sub(QUIET)))
}
