//! The source stage: logical replication from PostgreSQL, decoded into typed transactions
//! in commit order.

pub mod check;
pub mod heartbeat;
pub mod pgoutput;
pub mod publication;
pub mod relation;
pub mod replication;
pub mod slot;
pub mod snapshot;
pub mod value;

use crate::lsn::Lsn;
use crate::pg::{describe, ConnectError};

/// Session settings under which values are read as text. The replication stream and the
/// snapshot's SELECTs must render every value alike, or snapshot rows and streamed changes of
/// the same key would not compare equal. (No spaces: they also travel as `-c name=value`.)
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO,MDY"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("standard_conforming_strings", "on"),
    // money's text follows it: `$1,234.50` whatever the server's locale.
    ("lc_monetary", "C"),
];

/// [`SESSION_SETTINGS`] as startup options.
pub fn session_options() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`SESSION_SETTINGS`] as SET statements.
pub fn session_set_sql() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(k, v)| format!("SET {k} = '{v}';"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Message prefixes Freshet writes into the WAL with `pg_logical_emit_message`.
pub const HEARTBEAT_PREFIX: &str = "freshet.heartbeat";

/// Errors of the source, by consequence: transient ones end the run so the service manager
/// restarts it from the slot's confirmed position; the others need an operator.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("replication stream from {endpoint}: {error}")]
    Replication {
        endpoint: String,
        error: pgwire_replication::PgWireError,
    },
    #[error("{what}: {}", describe(error))]
    Catalog {
        what: String,
        error: tokio_postgres::Error,
    },
    #[error("undecodable pgoutput message at {lsn}: {error}")]
    Decode {
        lsn: Lsn,
        error: pgoutput::DecodeError,
    },
    #[error("change for relation {0} arrived before its Relation message")]
    UnknownRelation(u32),
    #[error("row of {table} has {got} columns, its Relation message {expected}")]
    Shape {
        table: String,
        expected: usize,
        got: usize,
    },
    #[error("column {column}: value is not UTF-8")]
    NotUtf8 { column: String },
    #[error("column {column}: {error}")]
    Value {
        column: String,
        error: value::ValueError,
    },
    #[error("replication slot: {0}")]
    Slot(String),
    #[error(
        "replication slot {slot:?} is lost: {why}. Changes made while it was missing cannot be \
         captured. To start over: drop the output's data and the state files of this slot, let \
         Freshet create a new slot, and re-snapshot the tables (`freshet snapshot`)"
    )]
    SlotLost { slot: String, why: String },
    #[error("publication: {0}")]
    Publication(String),
    #[error(
        "a change to {root} arrived under the name of its partition {leaf}: the publication \
         published partitions under their own names when it was written. Nothing from it on was \
         confirmed. ALTER PUBLICATION ... SET (publish_via_partition_root = true); if this stays \
         after a restart (WAL written before that keeps the old setting), drop the slot, the \
         output's data and the state files, and start again"
    )]
    LeafPartition { leaf: String, root: String },
    #[error(
        "an update of {table} left its key column {column} stored out of line (TOAST) and the \
         stream carries no old value for it, so the row's key is unknown. Nothing from it on \
         was confirmed. ALTER TABLE {table} REPLICA IDENTITY FULL (the old row then carries \
         the key); this change itself was written without it: re-snapshot the table after \
         recreating the slot"
    )]
    UnchangedKey { table: String, column: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("the server ended the replication stream")]
    StreamEnded,
    #[error("replication protocol: {0}")]
    Protocol(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("the output stopped: {0}")]
    OutputGone(String),
    #[error(
        "the final confirmation of {lsn} did not complete within {after:?}; a restart re-reads \
         from the slot's last confirmed position"
    )]
    ConfirmTimeout {
        lsn: Lsn,
        after: std::time::Duration,
    },
}

impl SourceError {
    /// Whether a restart can fix it (network, server restarts), as opposed to data or setup
    /// problems an operator must look at.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect(e) => e.transient,
            SourceError::StreamEnded | SourceError::ConfirmTimeout { .. } => true,
            SourceError::Replication { error, .. } => !matches!(
                error,
                pgwire_replication::PgWireError::Server(_)
                    | pgwire_replication::PgWireError::Auth(_)
            ),
            SourceError::Catalog { error, .. } => crate::pg::is_transient(error),
            _ => false,
        }
    }
}
