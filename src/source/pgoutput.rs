//! The pgoutput logical decoding protocol (v1), decoded from the bytes of one XLogData
//! payload. Pure: no I/O, no state; the relation cache gives tuples their meaning.

use bytes::Bytes;

use crate::lsn::Lsn;

/// One pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        commit_ts: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_ts: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is the key (`K`) or the whole old row (`O`) when the identity sends one.
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1: part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    Key(Tuple),
    Full(Tuple),
}

pub type Tuple = Vec<TupleValue>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// An unchanged TOASTed value, not sent.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message is empty")]
    Empty,
    #[error(
        "pgoutput message {tag:?} is truncated: needed {needed} more bytes at offset {offset}"
    )]
    Truncated {
        tag: char,
        offset: usize,
        needed: usize,
    },
    #[error("pgoutput message tag {0:?} is unknown")]
    UnknownTag(char),
    #[error("pgoutput message {tag:?}: {what}")]
    Invalid { tag: char, what: String },
}

/// The fewest bytes one Relation column can take: flags, an empty name's NUL, type OID,
/// type modifier. Bounds allocations by what the buffer can actually hold.
const MIN_RELATION_COLUMN_LEN: usize = 1 + 1 + 4 + 4;
/// The fewest bytes one TupleData column can take: a bare `n` or `u`.
const MIN_TUPLE_COLUMN_LEN: usize = 1;
/// Truncate lists relation OIDs of four bytes each.
const OID_LEN: usize = 4;

/// Truncate option bits (`TRUNCATE_CASCADE`, `TRUNCATE_RESTART_SEQS` in PostgreSQL).
const TRUNCATE_CASCADE: u8 = 1;
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
/// Message flag bit: the message was emitted transactionally.
const MESSAGE_TRANSACTIONAL: u8 = 1;

/// Decodes one pgoutput message. The message must fill `buf` exactly; tuple values are
/// slices of `buf`, not copies.
pub fn decode(buf: Bytes) -> Result<Message, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Empty);
    };
    let mut r = Reader {
        buf,
        pos: 1,
        tag: char::from(tag),
    };
    let message = match tag {
        b'B' => begin(&mut r)?,
        b'C' => commit(&mut r)?,
        b'O' => origin(&mut r)?,
        b'R' => relation(&mut r)?,
        b'Y' => type_message(&mut r)?,
        b'I' => insert(&mut r)?,
        b'U' => update(&mut r)?,
        b'D' => delete(&mut r)?,
        b'T' => truncate(&mut r)?,
        b'M' => logical_message(&mut r)?,
        _ => return Err(DecodeError::UnknownTag(char::from(tag))),
    };
    r.finish()?;
    Ok(message)
}

fn begin(r: &mut Reader) -> Result<Message, DecodeError> {
    let final_lsn = r.lsn()?;
    let commit_ts = r.i64()?;
    let xid = r.u32()?;
    Ok(Message::Begin {
        final_lsn,
        commit_ts,
        xid,
    })
}

fn commit(r: &mut Reader) -> Result<Message, DecodeError> {
    let flags = r.u8()?;
    let commit_lsn = r.lsn()?;
    let end_lsn = r.lsn()?;
    let commit_ts = r.i64()?;
    Ok(Message::Commit {
        flags,
        commit_lsn,
        end_lsn,
        commit_ts,
    })
}

fn origin(r: &mut Reader) -> Result<Message, DecodeError> {
    let commit_lsn = r.lsn()?;
    let name = r.cstring("origin name")?;
    Ok(Message::Origin { commit_lsn, name })
}

fn relation(r: &mut Reader) -> Result<Message, DecodeError> {
    let oid = r.u32()?;
    let namespace = r.cstring("relation namespace")?;
    let name = r.cstring("relation name")?;
    let replica_identity = r.u8()?;
    let count = r.count_i16("relation column count")?;
    let mut columns = Vec::with_capacity(count.min(r.remaining() / MIN_RELATION_COLUMN_LEN));
    for _ in 0..count {
        columns.push(relation_column(r)?);
    }
    Ok(Message::Relation(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    }))
}

fn relation_column(r: &mut Reader) -> Result<RelationColumn, DecodeError> {
    let flags = r.u8()?;
    let name = r.cstring("column name")?;
    let type_oid = r.u32()?;
    let type_modifier = r.i32()?;
    Ok(RelationColumn {
        flags,
        name,
        type_oid,
        type_modifier,
    })
}

fn type_message(r: &mut Reader) -> Result<Message, DecodeError> {
    let oid = r.u32()?;
    let namespace = r.cstring("type namespace")?;
    let name = r.cstring("type name")?;
    Ok(Message::Type {
        oid,
        namespace,
        name,
    })
}

fn insert(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation = r.u32()?;
    r.expect(b'N', "new tuple marker")?;
    let new = tuple(r)?;
    Ok(Message::Insert { relation, new })
}

fn update(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation = r.u32()?;
    let old = match r.u8()? {
        b'N' => None,
        marker => {
            let old = old_tuple(r, marker)?;
            r.expect(b'N', "new tuple marker")?;
            Some(old)
        }
    };
    let new = tuple(r)?;
    Ok(Message::Update { relation, old, new })
}

fn delete(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation = r.u32()?;
    let marker = r.u8()?;
    let old = old_tuple(r, marker)?;
    Ok(Message::Delete { relation, old })
}

/// The old row after its marker byte, which the caller has read.
fn old_tuple(r: &mut Reader, marker: u8) -> Result<OldTuple, DecodeError> {
    match marker {
        b'K' => Ok(OldTuple::Key(tuple(r)?)),
        b'O' => Ok(OldTuple::Full(tuple(r)?)),
        other => Err(r.invalid(format!(
            "old tuple marker is {:?} at offset {}, expected 'K' or 'O'",
            char::from(other),
            r.pos - 1
        ))),
    }
}

fn truncate(r: &mut Reader) -> Result<Message, DecodeError> {
    let count = r.length_i32("truncated relation count")?;
    let options = r.u8()?;
    let mut relations = Vec::with_capacity(count.min(r.remaining() / OID_LEN));
    for _ in 0..count {
        relations.push(r.u32()?);
    }
    Ok(Message::Truncate {
        relations,
        cascade: options & TRUNCATE_CASCADE != 0,
        restart_identity: options & TRUNCATE_RESTART_IDENTITY != 0,
    })
}

fn logical_message(r: &mut Reader) -> Result<Message, DecodeError> {
    let flags = r.u8()?;
    let lsn = r.lsn()?;
    let prefix = r.cstring("message prefix")?;
    let len = r.length_i32("message content length")?;
    let content = r.take(len)?;
    Ok(Message::Message {
        transactional: flags & MESSAGE_TRANSACTIONAL != 0,
        lsn,
        prefix,
        content,
    })
}

fn tuple(r: &mut Reader) -> Result<Tuple, DecodeError> {
    let count = r.count_i16("tuple column count")?;
    let mut values = Vec::with_capacity(count.min(r.remaining() / MIN_TUPLE_COLUMN_LEN));
    for _ in 0..count {
        values.push(tuple_value(r)?);
    }
    Ok(values)
}

fn tuple_value(r: &mut Reader) -> Result<TupleValue, DecodeError> {
    match r.u8()? {
        b'n' => Ok(TupleValue::Null),
        b'u' => Ok(TupleValue::Unchanged),
        b't' => {
            let len = r.length_i32("text value length")?;
            Ok(TupleValue::Text(r.take(len)?))
        }
        b'b' => {
            let len = r.length_i32("binary value length")?;
            Ok(TupleValue::Binary(r.take(len)?))
        }
        other => Err(r.invalid(format!(
            "tuple column kind is {:?} at offset {}, expected 'n', 'u', 't' or 'b'",
            char::from(other),
            r.pos - 1
        ))),
    }
}

/// A bounds-checked cursor over one message. Every read either succeeds whole or fails
/// with `Truncated` and leaves nothing half-read that a caller could act on.
struct Reader {
    buf: Bytes,
    pos: usize,
    tag: char,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn truncated(&self, len: usize) -> DecodeError {
        DecodeError::Truncated {
            tag: self.tag,
            offset: self.pos,
            needed: len.saturating_sub(self.remaining()),
        }
    }

    fn invalid(&self, what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            tag: self.tag,
            what: what.into(),
        }
    }

    /// The next `len` bytes as a slice sharing `buf`'s storage.
    fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(self.truncated(len));
        }
        let bytes = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.buf.get(self.pos..).and_then(|rest| rest.get(..N));
        let Some(array) = bytes.and_then(|b| <[u8; N]>::try_from(b).ok()) else {
            return Err(self.truncated(N));
        };
        self.pos += N;
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// OIDs and xids travel as int32 but are unsigned in PostgreSQL.
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array()?)))
    }

    fn expect(&mut self, wanted: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8()?;
        if got == wanted {
            return Ok(());
        }
        Err(self.invalid(format!(
            "{what} is {:?} at offset {}, expected {:?}",
            char::from(got),
            self.pos - 1,
            char::from(wanted)
        )))
    }

    /// An int16 count; negative is malformed, not "none".
    fn count_i16(&mut self, what: &str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.i16()?;
        usize::try_from(n)
            .map_err(|_| self.invalid(format!("{what} is negative ({n}) at offset {offset}")))
    }

    /// An int32 length or count; negative is malformed (pgoutput marks NULL with 'n', never -1).
    fn length_i32(&mut self, what: &str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.i32()?;
        usize::try_from(n)
            .map_err(|_| self.invalid(format!("{what} is negative ({n}) at offset {offset}")))
    }

    /// A NUL-terminated UTF-8 string (identifiers, prefixes).
    fn cstring(&mut self, what: &str) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            // Without its NUL we cannot know the length: at least the NUL is missing.
            return Err(DecodeError::Truncated {
                tag: self.tag,
                offset: self.buf.len(),
                needed: 1,
            });
        };
        let text = std::str::from_utf8(&rest[..len])
            .map_err(|e| self.invalid(format!("{what} at offset {} is not UTF-8: {e}", self.pos)))?
            .to_owned();
        self.pos += len + 1;
        Ok(text)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.invalid(format!(
                "{n} trailing bytes after the message at offset {}",
                self.pos
            ))),
        }
    }
}

/// Encodes a message as PostgreSQL sends it; `decode(encode(m)) == Ok(m)` for every message
/// `decode` can return. Beyond what the protocol can carry (names containing NUL, more than
/// 32767 columns, content over 2 GiB) the output is cut to what fits, so it stays decodable.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    match msg {
        Message::Begin {
            final_lsn,
            commit_ts,
            xid,
        } => {
            out.push(b'B');
            put_u64(&mut out, final_lsn.0);
            put_i64(&mut out, *commit_ts);
            put_u32(&mut out, *xid);
        }
        Message::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_ts,
        } => {
            out.push(b'C');
            out.push(*flags);
            put_u64(&mut out, commit_lsn.0);
            put_u64(&mut out, end_lsn.0);
            put_i64(&mut out, *commit_ts);
        }
        Message::Origin { commit_lsn, name } => {
            out.push(b'O');
            put_u64(&mut out, commit_lsn.0);
            put_cstring(&mut out, name);
        }
        Message::Relation(rel) => put_relation(&mut out, rel),
        Message::Type {
            oid,
            namespace,
            name,
        } => {
            out.push(b'Y');
            put_u32(&mut out, *oid);
            put_cstring(&mut out, namespace);
            put_cstring(&mut out, name);
        }
        Message::Insert { relation, new } => {
            out.push(b'I');
            put_u32(&mut out, *relation);
            out.push(b'N');
            put_tuple(&mut out, new);
        }
        Message::Update { relation, old, new } => {
            out.push(b'U');
            put_u32(&mut out, *relation);
            if let Some(old) = old {
                put_old_tuple(&mut out, old);
            }
            out.push(b'N');
            put_tuple(&mut out, new);
        }
        Message::Delete { relation, old } => {
            out.push(b'D');
            put_u32(&mut out, *relation);
            put_old_tuple(&mut out, old);
        }
        Message::Truncate {
            relations,
            cascade,
            restart_identity,
        } => {
            out.push(b'T');
            let n = put_count_i32(&mut out, relations.len());
            let mut options = 0;
            if *cascade {
                options |= TRUNCATE_CASCADE;
            }
            if *restart_identity {
                options |= TRUNCATE_RESTART_IDENTITY;
            }
            out.push(options);
            for oid in relations.iter().take(n) {
                put_u32(&mut out, *oid);
            }
        }
        Message::Message {
            transactional,
            lsn,
            prefix,
            content,
        } => {
            out.push(b'M');
            out.push(if *transactional {
                MESSAGE_TRANSACTIONAL
            } else {
                0
            });
            put_u64(&mut out, lsn.0);
            put_cstring(&mut out, prefix);
            put_sized(&mut out, content);
        }
    }
    out
}

fn put_relation(out: &mut Vec<u8>, rel: &Relation) {
    out.push(b'R');
    put_u32(out, rel.oid);
    put_cstring(out, &rel.namespace);
    put_cstring(out, &rel.name);
    out.push(rel.replica_identity);
    let n = put_count_i16(out, rel.columns.len());
    for col in rel.columns.iter().take(n) {
        out.push(col.flags);
        put_cstring(out, &col.name);
        put_u32(out, col.type_oid);
        out.extend_from_slice(&col.type_modifier.to_be_bytes());
    }
}

fn put_old_tuple(out: &mut Vec<u8>, old: &OldTuple) {
    let (marker, tuple) = match old {
        OldTuple::Key(t) => (b'K', t),
        OldTuple::Full(t) => (b'O', t),
    };
    out.push(marker);
    put_tuple(out, tuple);
}

fn put_tuple(out: &mut Vec<u8>, tuple: &Tuple) {
    let n = put_count_i16(out, tuple.len());
    for value in tuple.iter().take(n) {
        match value {
            TupleValue::Null => out.push(b'n'),
            TupleValue::Unchanged => out.push(b'u'),
            TupleValue::Text(bytes) => {
                out.push(b't');
                put_sized(out, bytes);
            }
            TupleValue::Binary(bytes) => {
                out.push(b'b');
                put_sized(out, bytes);
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes an int16 count of at most `len` and returns how many items it announced.
fn put_count_i16(out: &mut Vec<u8>, len: usize) -> usize {
    let n = i16::try_from(len).unwrap_or(i16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    n.unsigned_abs().into()
}

/// Writes an int32 count of at most `len` and returns how many items it announced.
fn put_count_i32(out: &mut Vec<u8>, len: usize) -> usize {
    let n = i32::try_from(len).unwrap_or(i32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX)
}

/// An int32 length then that many bytes.
fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = put_count_i32(out, bytes.len());
    out.extend_from_slice(&bytes[..n.min(bytes.len())]);
}

/// Writes `s` up to its first NUL, which would otherwise end the string early.
fn put_cstring(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    out.extend_from_slice(&bytes[..end]);
    out.push(0);
}

#[cfg(test)]
mod tests;
