//! Freshet: change-data-capture from PostgreSQL to Kafka, Parquet and Redshift.

pub mod bench;
pub mod cli;
pub mod config;
pub mod loadgen;
pub mod pg;
