//! Freshet: change-data-capture from PostgreSQL to Kafka, Parquet and Redshift.
//!
//! Without the default `kafka` feature only the capture side's byte-level readers and their
//! neighbours build (the fuzz targets need that: librdkafka does not link under the
//! sanitizers).

pub mod aws;
#[cfg(feature = "kafka")]
pub mod batcher;
#[cfg(feature = "kafka")]
pub mod bench;
pub mod change;
#[cfg(feature = "kafka")]
pub mod cli;
pub mod config;
pub mod crash;
#[cfg(feature = "kafka")]
pub mod freshness;
pub mod jsonl;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kind;
#[cfg(feature = "kafka")]
pub mod loader;
pub mod loadgen;
pub mod lsn;
pub mod pg;
pub mod pipeline;
#[cfg(feature = "kafka")]
pub mod router;
pub mod source;
pub mod state;
#[cfg(feature = "kafka")]
pub mod store;
#[cfg(feature = "kafka")]
pub mod telemetry;
#[cfg(feature = "kafka")]
pub mod transform;
