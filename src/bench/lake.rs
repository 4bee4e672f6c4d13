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
    let started = Instant::now();
    let summary = batcher::drain(k, &settings, &store, QUIET).await?;
    Ok(LakeRun {
        summary,
        elapsed: started.elapsed().saturating_sub(QUIET),
        peak_rss_kib: super::capture::peak_rss_kib(),
    })
}
