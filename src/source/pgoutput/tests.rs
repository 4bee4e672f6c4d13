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
        (arb_lsn(), arb_name()).prop_map(|(commit_lsn, name)| Message::Origin { commit_lsn, name }),
        arb_relation().prop_map(Message::Relation),
        (any::<u32>(), arb_name(), arb_name()).prop_map(|(oid, namespace, name)| {
            Message::Type {
                oid,
                namespace,
                name,
            }
        }),
        (any::<u32>(), arb_tuple()).prop_map(|(relation, new)| Message::Insert { relation, new }),
        (
            any::<u32>(),
            proptest::option::of(arb_old_tuple()),
            arb_tuple()
        )
            .prop_map(|(relation, old, new)| Message::Update { relation, old, new }),
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
