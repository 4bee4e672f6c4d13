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
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Concatenates hand-written wire fragments.
    fn wire(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    fn text(s: &str) -> TupleValue {
        TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Decodes hand-built bytes, checks the result, and checks `encode` writes the same bytes.
    fn check(bytes: Bytes, expected: Message) {
        assert_eq!(decode(bytes.clone()), Ok(expected.clone()));
        assert_eq!(encode(&expected), bytes.to_vec());
    }

    /// One valid message of every kind, as bytes written by hand.
    fn samples() -> Vec<(Bytes, Message)> {
        vec![
            (
                wire(&[
                    b"B",
                    &0x0000_0001_0000_0010u64.to_be_bytes(),
                    &820_000_000_000_000i64.to_be_bytes(),
                    &7u32.to_be_bytes(),
                ]),
                Message::Begin {
                    final_lsn: Lsn(0x1_0000_0010),
                    commit_ts: 820_000_000_000_000,
                    xid: 7,
                },
            ),
            (
                wire(&[
                    b"C\x00",
                    &16u64.to_be_bytes(),
                    &24u64.to_be_bytes(),
                    &(-5i64).to_be_bytes(),
                ]),
                Message::Commit {
                    flags: 0,
                    commit_lsn: Lsn(16),
                    end_lsn: Lsn(24),
                    commit_ts: -5,
                },
            ),
            (
                wire(&[b"O", &9u64.to_be_bytes(), b"node_a\0"]),
                Message::Origin {
                    commit_lsn: Lsn(9),
                    name: "node_a".into(),
                },
            ),
            (
                wire(&[
                    b"R",
                    &16385u32.to_be_bytes(),
                    b"public\0",
                    b"caf\xc3\xa9\0",
                    b"d",
                    &2i16.to_be_bytes(),
                    b"\x01id\0",
                    &23u32.to_be_bytes(),
                    &(-1i32).to_be_bytes(),
                    b"\x00name\0",
                    &1043u32.to_be_bytes(),
                    &68i32.to_be_bytes(),
                ]),
                Message::Relation(Relation {
                    oid: 16385,
                    namespace: "public".into(),
                    name: "café".into(),
                    replica_identity: b'd',
                    columns: vec![
                        RelationColumn {
                            flags: 1,
                            name: "id".into(),
                            type_oid: 23,
                            type_modifier: -1,
                        },
                        RelationColumn {
                            flags: 0,
                            name: "name".into(),
                            type_oid: 1043,
                            type_modifier: 68,
                        },
                    ],
                }),
            ),
            (
                wire(&[b"Y", &16400u32.to_be_bytes(), b"public\0", b"mood\0"]),
                Message::Type {
                    oid: 16400,
                    namespace: "public".into(),
                    name: "mood".into(),
                },
            ),
            (
                wire(&[
                    b"I",
                    &16385u32.to_be_bytes(),
                    b"N",
                    &4i16.to_be_bytes(),
                    b"t",
                    &2i32.to_be_bytes(),
                    b"42",
                    b"n",
                    b"u",
                    b"b",
                    &3i32.to_be_bytes(),
                    b"\x00\xff\x01",
                ]),
                Message::Insert {
                    relation: 16385,
                    new: vec![
                        text("42"),
                        TupleValue::Null,
                        TupleValue::Unchanged,
                        TupleValue::Binary(Bytes::from_static(b"\x00\xff\x01")),
                    ],
                },
            ),
            (
                wire(&[
                    b"U",
                    &5u32.to_be_bytes(),
                    b"N",
                    &1i16.to_be_bytes(),
                    b"t",
                    &0i32.to_be_bytes(),
                ]),
                Message::Update {
                    relation: 5,
                    old: None,
                    new: vec![text("")],
                },
            ),
            (
                wire(&[
                    b"U",
                    &5u32.to_be_bytes(),
                    b"K",
                    &1i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    b"1",
                    b"N",
                    &1i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    b"2",
                ]),
                Message::Update {
                    relation: 5,
                    old: Some(OldTuple::Key(vec![text("1")])),
                    new: vec![text("2")],
                },
            ),
            (
                wire(&[
                    b"U",
                    &5u32.to_be_bytes(),
                    b"O",
                    &2i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    b"1",
                    b"n",
                    b"N",
                    &2i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    b"1",
                    b"u",
                ]),
                Message::Update {
                    relation: 5,
                    old: Some(OldTuple::Full(vec![text("1"), TupleValue::Null])),
                    new: vec![text("1"), TupleValue::Unchanged],
                },
            ),
            (
                wire(&[
                    b"D",
                    &5u32.to_be_bytes(),
                    b"K",
                    &1i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    b"1",
                ]),
                Message::Delete {
                    relation: 5,
                    old: OldTuple::Key(vec![text("1")]),
                },
            ),
            (
                wire(&[b"D", &5u32.to_be_bytes(), b"O", &0i16.to_be_bytes()]),
                Message::Delete {
                    relation: 5,
                    old: OldTuple::Full(vec![]),
                },
            ),
            (
                wire(&[
                    b"T",
                    &2i32.to_be_bytes(),
                    b"\x03",
                    &10u32.to_be_bytes(),
                    &u32::MAX.to_be_bytes(),
                ]),
                Message::Truncate {
                    relations: vec![10, u32::MAX],
                    cascade: true,
                    restart_identity: true,
                },
            ),
            (
                wire(&[b"T", &1i32.to_be_bytes(), b"\x02", &10u32.to_be_bytes()]),
                Message::Truncate {
                    relations: vec![10],
                    cascade: false,
                    restart_identity: true,
                },
            ),
            (
                wire(&[
                    b"M\x01",
                    &77u64.to_be_bytes(),
                    b"freshet.heartbeat\0",
                    &3i32.to_be_bytes(),
                    b"abc",
                ]),
                Message::Message {
                    transactional: true,
                    lsn: Lsn(77),
                    prefix: "freshet.heartbeat".into(),
                    content: Bytes::from_static(b"abc"),
                },
            ),
            (
                wire(&[b"M\x00", &77u64.to_be_bytes(), b"\0", &0i32.to_be_bytes()]),
                Message::Message {
                    transactional: false,
                    lsn: Lsn(77),
                    prefix: String::new(),
                    content: Bytes::new(),
                },
            ),
        ]
    }

    #[test]
    fn decodes_every_message_kind_from_hand_built_bytes() {
        let kinds: std::collections::BTreeSet<u8> = samples().iter().map(|(b, _)| b[0]).collect();
        assert_eq!(kinds.len(), 10, "every tag has a sample");
        for (bytes, message) in samples() {
            check(bytes, message);
        }
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        for (bytes, _) in samples() {
            for cut in 0..bytes.len() {
                match decode(bytes.slice(..cut)) {
                    Err(DecodeError::Empty) => assert_eq!(cut, 0),
                    Err(DecodeError::Truncated {
                        tag,
                        offset,
                        needed,
                    }) => {
                        assert_eq!(tag, char::from(bytes[0]));
                        assert!(
                            needed > 0 && offset <= cut,
                            "{bytes:?} cut at {cut}: offset {offset}"
                        );
                    }
                    other => panic!("{bytes:?} cut at {cut} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_invalid() {
        for (bytes, _) in samples() {
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(matches!(
                decode(Bytes::from(longer)),
                Err(DecodeError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn tuple_values_share_the_input_buffer() {
        let bytes = wire(&[
            b"I",
            &1u32.to_be_bytes(),
            b"N",
            &1i16.to_be_bytes(),
            b"t",
            &5i32.to_be_bytes(),
            b"hello",
        ]);
        let range = bytes.as_ptr_range();
        let Ok(Message::Insert { new, .. }) = decode(bytes.clone()) else {
            panic!("not an insert")
        };
        let [TupleValue::Text(value)] = new.as_slice() else {
            panic!("not one text value")
        };
        assert_eq!(&value[..], b"hello");
        assert!(range.contains(&value.as_ptr()), "the value was copied");
    }

    #[test]
    fn empty_and_unknown_tags() {
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(
            decode(Bytes::from_static(b"Z")),
            Err(DecodeError::UnknownTag('Z'))
        );
        // Streaming (protocol v2) messages are not v1.
        assert_eq!(
            decode(Bytes::from_static(b"S\0\0\0\x01\x01")),
            Err(DecodeError::UnknownTag('S'))
        );
    }

    #[test]
    fn huge_counts_with_few_bytes_are_truncated_not_allocated() {
        let tuple = wire(&[
            b"I",
            &1u32.to_be_bytes(),
            b"N",
            &30000i16.to_be_bytes(),
            b"nnnnnnnnnn",
        ]);
        assert_eq!(
            decode(tuple),
            Err(DecodeError::Truncated {
                tag: 'I',
                offset: 18,
                needed: 1
            })
        );
        let rel = wire(&[
            b"R",
            &1u32.to_be_bytes(),
            b"s\0t\0d",
            &i16::MAX.to_be_bytes(),
            b"\x00a\0",
        ]);
        assert!(matches!(
            decode(rel),
            Err(DecodeError::Truncated { tag: 'R', .. })
        ));
        let trunc = wire(&[b"T", &i32::MAX.to_be_bytes(), b"\x00", &1u32.to_be_bytes()]);
        assert_eq!(
            decode(trunc),
            Err(DecodeError::Truncated {
                tag: 'T',
                offset: 10,
                needed: 4
            })
        );
        let value = wire(&[
            b"I",
            &1u32.to_be_bytes(),
            b"N",
            &1i16.to_be_bytes(),
            b"t",
            &i32::MAX.to_be_bytes(),
            b"x",
        ]);
        assert_eq!(
            decode(value),
            Err(DecodeError::Truncated {
                tag: 'I',
                offset: 13,
                needed: i32::MAX as usize - 1
            })
        );
    }

    #[test]
    fn negative_lengths_and_counts_are_invalid() {
        let cases = [
            wire(&[
                b"I",
                &1u32.to_be_bytes(),
                b"N",
                &1i16.to_be_bytes(),
                b"t",
                &(-1i32).to_be_bytes(),
            ]),
            wire(&[
                b"I",
                &1u32.to_be_bytes(),
                b"N",
                &1i16.to_be_bytes(),
                b"b",
                &i32::MIN.to_be_bytes(),
            ]),
            wire(&[b"I", &1u32.to_be_bytes(), b"N", &(-1i16).to_be_bytes()]),
            wire(&[
                b"R",
                &1u32.to_be_bytes(),
                b"s\0t\0d",
                &(-2i16).to_be_bytes(),
            ]),
            wire(&[b"T", &(-1i32).to_be_bytes(), b"\x00"]),
            wire(&[
                b"M\x00",
                &1u64.to_be_bytes(),
                b"p\0",
                &(-3i32).to_be_bytes(),
            ]),
        ];
        for bytes in cases {
            let result = decode(bytes.clone());
            assert!(
                matches!(result, Err(DecodeError::Invalid { .. })),
                "{bytes:?}: {result:?}"
            );
        }
    }

    #[test]
    fn malformed_markers_and_strings_are_invalid() {
        let cases = [
            // Insert without its 'N'.
            wire(&[b"I", &1u32.to_be_bytes(), b"K", &0i16.to_be_bytes()]),
            // Update whose old tuple is followed by something other than 'N'.
            wire(&[
                b"U",
                &1u32.to_be_bytes(),
                b"K",
                &0i16.to_be_bytes(),
                b"K",
                &0i16.to_be_bytes(),
            ]),
            // Update with an unknown marker.
            wire(&[b"U", &1u32.to_be_bytes(), b"X", &0i16.to_be_bytes()]),
            // Delete needs 'K' or 'O'.
            wire(&[b"D", &1u32.to_be_bytes(), b"N", &0i16.to_be_bytes()]),
            // Unknown tuple column kind.
            wire(&[b"I", &1u32.to_be_bytes(), b"N", &1i16.to_be_bytes(), b"x"]),
            // A name that is not UTF-8.
            wire(&[b"Y", &1u32.to_be_bytes(), b"public\0", b"\xff\xfe\0"]),
        ];
        for bytes in cases {
            let result = decode(bytes.clone());
            assert!(
                matches!(result, Err(DecodeError::Invalid { .. })),
                "{bytes:?}: {result:?}"
            );
        }
    }

    #[test]
    fn errors_say_where() {
        let err = decode(wire(&[b"B", &1u64.to_be_bytes()])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pgoutput message 'B' is truncated: needed 8 more bytes at offset 9"
        );
    }

    #[test]
    fn encode_cuts_what_the_protocol_cannot_carry() {
        // A NUL inside a name would end it early; encode stops there so the bytes decode.
        let msg = Message::Origin {
            commit_lsn: Lsn(1),
            name: "a\0b".into(),
        };
        assert_eq!(
            decode(Bytes::from(encode(&msg))),
            Ok(Message::Origin {
                commit_lsn: Lsn(1),
                name: "a".into()
            })
        );
        let wide = Message::Insert {
            relation: 1,
            new: vec![TupleValue::Null; 40_000],
        };
        let Ok(Message::Insert { new, .. }) = decode(Bytes::from(encode(&wide))) else {
            panic!("undecodable")
        };
        assert_eq!(new.len(), i16::MAX as usize);
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[^\\x00]{0,10}"
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn arb_tuple() -> impl Strategy<Value = Tuple> {
        let value = prop_oneof![
            Just(TupleValue::Null),
            Just(TupleValue::Unchanged),
            arb_bytes().prop_map(TupleValue::Text),
            arb_bytes().prop_map(TupleValue::Binary),
        ];
        vec(value, 0..6)
    }

    fn arb_old_tuple() -> impl Strategy<Value = OldTuple> {
        prop_oneof![
            arb_tuple().prop_map(OldTuple::Key),
            arb_tuple().prop_map(OldTuple::Full)
        ]
    }

    fn arb_lsn() -> impl Strategy<Value = Lsn> {
        any::<u64>().prop_map(Lsn)
    }

    fn arb_relation() -> impl Strategy<Value = Relation> {
        let column = (any::<u8>(), arb_name(), any::<u32>(), any::<i32>()).prop_map(
            |(flags, name, type_oid, type_modifier)| RelationColumn {
                flags,
                name,
                type_oid,
                type_modifier,
            },
        );
        (
            any::<u32>(),
            arb_name(),
            arb_name(),
            any::<u8>(),
            vec(column, 0..5),
        )
            .prop_map(
                |(oid, namespace, name, replica_identity, columns)| Relation {
                    oid,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                },
            )
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (arb_lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
                Message::Begin {
                    final_lsn,
                    commit_ts,
                    xid,
                }
            }),
            (any::<u8>(), arb_lsn(), arb_lsn(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_ts)| {
                    Message::Commit {
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_ts,
                    }
                }
            ),
            (arb_lsn(), arb_name())
                .prop_map(|(commit_lsn, name)| Message::Origin { commit_lsn, name }),
            arb_relation().prop_map(Message::Relation),
            (any::<u32>(), arb_name(), arb_name()).prop_map(|(oid, namespace, name)| {
                Message::Type {
                    oid,
                    namespace,
                    name,
                }
            }),
            (any::<u32>(), arb_tuple())
                .prop_map(|(relation, new)| Message::Insert { relation, new }),
            (
                any::<u32>(),
                proptest::option::of(arb_old_tuple()),
                arb_tuple()
            )
                .prop_map(|(relation, old, new)| Message::Update {
                    relation,
                    old,
                    new
                }),
            (any::<u32>(), arb_old_tuple())
                .prop_map(|(relation, old)| Message::Delete { relation, old }),
            (vec(any::<u32>(), 0..6), any::<bool>(), any::<bool>()).prop_map(
                |(relations, cascade, restart_identity)| {
                    Message::Truncate {
                        relations,
                        cascade,
                        restart_identity,
                    }
                }
            ),
            (any::<bool>(), arb_lsn(), arb_name(), arb_bytes()).prop_map(
                |(transactional, lsn, prefix, content)| {
                    Message::Message {
                        transactional,
                        lsn,
                        prefix,
                        content,
                    }
                }
            ),
        ]
    }

    fn arb_tag() -> impl Strategy<Value = u8> {
        prop::sample::select(b"BCORYIUDTM".to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn encode_then_decode_round_trips(msg in arb_message()) {
            prop_assert_eq!(decode(Bytes::from(encode(&msg))), Ok(msg));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn arbitrary_bodies_of_known_tags_never_panic(tag in arb_tag(), body in vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![tag];
            bytes.extend(body);
            if let Ok(msg) = decode(Bytes::from(bytes)) {
                prop_assert_eq!(decode(Bytes::from(encode(&msg))), Ok(msg));
            }
        }

        #[test]
        fn corrupted_messages_never_panic(msg in arb_message(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = encode(&msg);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(msg) = decode(Bytes::from(bytes)) {
                prop_assert_eq!(decode(Bytes::from(encode(&msg))), Ok(msg));
            }
        }
    }
}
