//! The sink half: the table topics → batcher → store → loader → warehouse. It holds no
//! state of its own: each start resumes from what the store (the batcher) and the
//! warehouse's ledger (the loader) hold.

use tokio::sync::{mpsc, watch};

use super::PipelineError;
use crate::batcher::{self, Settings, Share, Summary};
use crate::config::Pipeline;
use crate::loader;
use crate::store::Store;

/// What the sink half needs that outlives its restarts.
pub struct Sink {
    pub settings: Settings,
    pub store: Store,
    /// `None` without a `warehouse` section: the sink half ends at the lake.
    pub loader: Option<loader::Settings>,
}

impl Sink {
    /// `None` when the pipeline has no `batcher` section (or no `kafka` one to read from).
    pub async fn open(p: &Pipeline, share: Option<Share>) -> Result<Option<Sink>, PipelineError> {
        let (Some(mut settings), Some(b)) = (Settings::from_pipeline(p), p.batcher.as_ref()) else {
            return Ok(None);
        };
        settings.share = share;
        let mut loader = loader::Settings::from_pipeline(p)?;
        if let Some(l) = &mut loader {
            l.share = share;
        }
        let store = Store::open(&b.store.value.0, &b.s3).await?;
        Ok(Some(Sink {
            settings,
            store,
            loader,
        }))
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
        super::readiness::set(super::readiness::SINK, Ok(()));
        let Some(l) = &self.loader else {
            return Ok(batcher::run(k, &self.settings, &self.store, None, stopped).await?);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let batcher = async {
            Ok::<_, PipelineError>(
                batcher::run(k, &self.settings, &self.store, Some(tx), stopped.clone()).await?,
            )
        };
        let loader = async {
            Ok::<_, PipelineError>(loader::run(p, l, &self.store, rx, stopped.clone()).await?)
        };
        let (summary, _) = tokio::try_join!(batcher, loader)?;
        Ok(summary)
    }
}

/// `freshet replay`: the table's topic read again from offset `from` into the lake, and the
/// table loaded again into the warehouse (from 0: rebuilt). Run it with the sink stopped.
pub async fn replay(
    p: &Pipeline,
    table: &crate::config::TableName,
    from: i64,
) -> Result<(Summary, loader::Summary), PipelineError> {
    let (Some(k), Some(b)) = (&p.kafka, &p.batcher) else {
        return Err(PipelineError::Config(
            "replay reads the kafka section's topics into the batcher's lake; the pipeline lacks one".into(),
        ));
    };
    let source = table.to_string();
    let (Some(mut settings), Some(mut l)) = (
        Settings::from_pipeline(p),
        loader::Settings::from_pipeline(p)?,
    ) else {
        return Err(PipelineError::Config(
            "replay loads into the warehouse; the pipeline has no warehouse section".into(),
        ));
    };
    settings.tables.retain(|t| t.name == source);
    l.tables.retain(|t| t.source == source);
    if settings.tables.is_empty() {
        return Err(PipelineError::Config(format!(
            "{source} is not one of source.tables"
        )));
    }
    settings.from = Some(from);
    let store = Store::open(&b.store.value.0, &b.s3).await?;
    loader::forget(p, &l, &source, from).await?;
    let written = batcher::drain(k, &settings, &store, std::time::Duration::from_secs(5)).await?;
    let loaded = loader::load_all(p, &l, &store).await?;
    Ok((written, loaded))
}
