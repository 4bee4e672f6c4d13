//! The sink half: the table topics → batcher → store (the loader joins in the next stage).
//! It holds no state of its own: each start resumes from what the store holds.

use tokio::sync::watch;

use super::PipelineError;
use crate::batcher::{self, Settings, Share, Summary};
use crate::config::Pipeline;
use crate::store::Store;

/// What the sink half needs that outlives its restarts.
pub struct Sink {
    pub settings: Settings,
    pub store: Store,
}

impl Sink {
    /// `None` when the pipeline has no `batcher` section (or no `kafka` one to read from).
    pub async fn open(p: &Pipeline, share: Option<Share>) -> Result<Option<Sink>, PipelineError> {
        let (Some(mut settings), Some(b)) = (Settings::from_pipeline(p), p.batcher.as_ref()) else {
            return Ok(None);
        };
        settings.share = share;
        let store = Store::open(&b.store.value.0, &b.s3).await?;
        Ok(Some(Sink { settings, store }))
    }

    /// Runs until `stopped` (writing every open file first) or a failure.
    pub async fn run(
        &self,
        p: &Pipeline,
        stopped: watch::Receiver<bool>,
    ) -> Result<Summary, PipelineError> {
        let Some(k) = &p.kafka else {
            return Err(PipelineError::Config(
                "the sink half reads the kafka section's topics; the pipeline has none".into(),
            ));
        };
        Ok(batcher::run(k, &self.settings, &self.store, stopped).await?)
    }
}
