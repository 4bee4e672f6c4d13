//! Freshet: change-data-capture from PostgreSQL to Kafka, Parquet and Redshift.

pub mod config;
