//! `freshet loadgen`: AtlasCo-shaped data and write load for the tests, the demo and the
//! benchmarks. `fill` bulk-loads through COPY; `run` writes a steady mix of small
//! transactions at a target rate. Both are deterministic for a seed.

pub mod data;
mod fill;
mod run;

pub use fill::{fill, FillOptions, FillReport};
pub use run::{run, Op, RunOptions, RunReport};

use crate::pg::{describe, ConnectError};

/// The AtlasCo schema, applied (idempotently) before a fill.
pub const SCHEMA_SQL: &str = include_str!("../../schema/schema.sql");

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{what}: {}", describe(error))]
    Postgres {
        what: String,
        error: tokio_postgres::Error,
    },
    #[error("{0} already holds rows: fill loads an empty AtlasCo schema (use a new database, or DROP SCHEMA atlasco CASCADE)")]
    NotEmpty(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Attaches what was being done to a PostgreSQL error.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, LoadgenError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, what: impl Into<String>) -> Result<T, LoadgenError> {
        self.map_err(|error| LoadgenError::Postgres {
            what: what.into(),
            error,
        })
    }
}
