//! Freshet: change-data-capture from PostgreSQL to Kafka, Parquet and Redshift.

pub mod bench;
pub mod change;
pub mod cli;
pub mod config;
pub mod jsonl;
pub mod kafka;
pub mod loadgen;
pub mod lsn;
pub mod pg;
pub mod pipeline;
pub mod source;
pub mod transform;
