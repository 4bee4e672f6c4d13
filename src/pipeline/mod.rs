//! Wires the stages into halves: capture (source → transform → kafka, or source → jsonl)
//! today; acknowledgements flow back through `ack`.
//!
//! Shutdown cascades: only the source watches the signal; it stops reading and drops its
//! output, the output drains, syncs and publishes its last durable position, and the source
//! confirms that position to PostgreSQL before the process exits.

pub mod ack;
#[cfg(feature = "kafka")]
mod capture;
#[cfg(feature = "kafka")]
pub mod policy;
#[cfg(feature = "kafka")]
pub mod supervisor;

#[cfg(feature = "kafka")]
pub(crate) use capture::{attribute_catalog, kafka_stages, CaptureOutput};
#[cfg(feature = "kafka")]
pub use capture::{run, OutputSpec, PipelineError, DRAIN_DEADLINE, EVENT_BUFFER};
