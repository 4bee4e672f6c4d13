//! Wires the stages into halves: capture (source → transform → kafka, or source → jsonl) and
//! sink (kafka → batcher → store); acknowledgements flow back through `ack`.
//!
//! Shutdown cascades: only the source watches the signal; it stops reading and drops its
//! output, the output drains, syncs and publishes its last durable position, and the source
//! confirms that position to PostgreSQL before the process exits.

pub mod ack;
#[cfg(feature = "kafka")]
mod capture;
pub mod notify;
#[cfg(feature = "kafka")]
pub mod policy;
pub mod readiness;
#[cfg(feature = "kafka")]
pub mod sink;
#[cfg(feature = "kafka")]
pub mod supervisor;

#[cfg(feature = "kafka")]
pub(crate) use capture::{attribute_catalog, kafka_stages, CaptureOutput};
#[cfg(feature = "kafka")]
pub use capture::{run, OutputSpec, DRAIN_DEADLINE, EVENT_BUFFER};

#[cfg(feature = "kafka")]
use std::time::Duration;

/// Why a half stopped; [`policy`] decides what happens next.
#[cfg(feature = "kafka")]
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Jsonl(#[from] crate::jsonl::JsonlError),
    #[error(transparent)]
    Transform(#[from] crate::transform::TransformError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
    #[error(transparent)]
    Batcher(#[from] crate::batcher::BatcherError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Loader(#[from] crate::loader::LoaderError),
    #[error("{0}")]
    Config(String),
    #[error("restoring state from Kafka: {0}")]
    Restore(crate::kafka::tail::TailError),
    #[error(
        "the output did not drain within {0:?}: forced stop, unsynced changes will be read again"
    )]
    DrainTimeout(Duration),
    #[error("the output task failed: {0}")]
    OutputTask(String),
}
