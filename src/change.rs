//! What the source emits: whole transactions of typed row changes, in commit order.

use std::sync::Arc;

use crate::lsn::{ChangeId, Lsn};

/// Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's own epoch.
pub type PgTimestamp = i64;

/// A PostgreSQL timestamp as microseconds since the Unix epoch.
pub fn unix_micros(ts: PgTimestamp) -> i64 {
    const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
    ts.saturating_add(PG_EPOCH_UNIX_MICROS)
}

/// A table as the stream describes it (from pgoutput Relation messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// REPLICA IDENTITY: `d` default (primary key), `f` full, `i` index, `n` nothing.
    pub replica_identity: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    /// The type as the decoder resolved it (domains to their base, arrays to elements).
    pub ty: TypeInfo,
    /// Part of the replica identity (the key for DEFAULT / INDEX identity).
    pub key: bool,
    /// Not declared NOT NULL (as the catalog said when the Relation arrived; the stream
    /// itself does not say).
    pub nullable: bool,
}

/// What the decoder needs to know of a column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub oid: u32,
    pub kind: TypeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// A built-in scalar type, decoded by OID.
    Scalar,
    /// A user-defined enum: the text is the label. Its labels in sort order, as the catalog
    /// had them when the Relation arrived (Debezium's `allowed`).
    Enum(Arc<[String]>),
    /// An array of the element type (typdelim `,` for every type this decodes).
    Array(Box<TypeInfo>),
    /// Anything else: kept as text.
    Other,
}

/// One column's value in a change.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    Null,
    /// A TOASTed value the update did not touch: PostgreSQL does not resend it. Never NULL,
    /// never a placeholder; consumers keep the value they have.
    Unchanged,
    Value(Value),
}

/// A typed column value. Types without a dedicated variant keep PostgreSQL's text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    /// Exact decimal text (`NaN`, `Infinity` and any precision included).
    Numeric(String),
    Text(String),
    Bytea(Vec<u8>),
    /// Days since 1970-01-01; ±infinity as the variants below.
    Date(DateValue),
    /// Microseconds since midnight.
    Time(i64),
    Timestamp(TimestampValue),
    TimestampTz(TimestampValue),
    Uuid([u8; 16]),
    /// JSON text as PostgreSQL rendered it (json keeps the input, jsonb normalises).
    Json(String),
    Jsonb(String),
    /// A one-dimensional or nested array; `None` elements are SQL NULL.
    Array(Vec<Option<Value>>),
    /// An enum label.
    Enum(String),
    /// Any other type, in its text form, with its type OID.
    Other {
        type_oid: u32,
        text: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateValue {
    NegInfinity,
    /// Days since 1970-01-01 (negative before; BC dates included).
    Days(i32),
    Infinity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampValue {
    NegInfinity,
    /// Microseconds since 1970-01-01 00:00:00 (UTC for timestamptz).
    Micros(i64),
    Infinity,
}

/// A row image: one datum per column of the table, in column order.
pub type Row = Vec<Datum>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// A row read by the snapshot.
    Read,
    Truncate,
}

impl Op {
    /// Debezium's op letter.
    pub fn letter(self) -> char {
        match self {
            Op::Insert => 'c',
            Op::Update => 'u',
            Op::Delete => 'd',
            Op::Read => 'r',
            Op::Truncate => 't',
        }
    }
}

/// One row change, with everything a consumer needs to place it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub id: ChangeId,
    /// The WAL position of the change's own record (a snapshot read: its window's).
    pub lsn: Lsn,
    pub op: Op,
    pub table: Arc<Table>,
    /// The old row: the key (DEFAULT/INDEX identity) or the whole row (FULL), when sent.
    pub before: Option<Row>,
    pub after: Option<Row>,
}

/// The source's output, in stream order. A transaction is `Begin`, its changes, `Commit`;
/// its changes stream through and are never collected in memory as a whole.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    Begin {
        xid: u32,
        commit_lsn: Lsn,
        commit_ts: PgTimestamp,
    },
    Change(Change),
    /// `end_lsn` is the position after the commit record: confirming it to PostgreSQL lets
    /// the slot forget this transaction.
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_ts: PgTimestamp,
    },
}
