//! The transform on its own: changes in, records out, no Kafka (registry-less encoding,
//! whose schema records come out as records too).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use apache_avro::Schema;
use tokio::sync::mpsc;

use super::*;
use crate::change::{Column, Datum, Row, Table, TypeInfo, TypeKind, Value};
use crate::lsn::ChangeId;
use crate::source::value::oid;

fn column(name: &str, type_oid: u32, key: bool, nullable: bool) -> Column {
    Column {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        ty: TypeInfo {
            oid: type_oid,
            kind: TypeKind::Scalar,
        },
        key,
        nullable,
    }
}

fn table(columns: Vec<Column>) -> Arc<Table> {
    Arc::new(Table {
        oid: 42,
        schema: "public".into(),
        name: "t".into(),
        columns,
        replica_identity: b'd',
    })
}

fn transform(config: &str) -> Transform {
    let config: crate::config::Transform = serde_json::from_str(config).unwrap();
    let encoding = Encoding::SingleObject {
        schema_topic: "p._schemas".into(),
        fingerprints: HashMap::new(),
        earlier: HashMap::new(),
    };
    Transform::new(
        "p",
        "db",
        encoding,
        HashMap::from([(("public".into(), "t".into()), vec!["id".into()])]),
        HashSet::from([("public".into(), "t".into())]),
        &config,
    )
}

fn change(
    seq: u32,
    op: Op,
    table: &Arc<Table>,
    before: Option<Row>,
    after: Option<Row>,
) -> SourceEvent {
    SourceEvent::Change(Change {
        id: ChangeId {
            commit_lsn: Lsn(0x100),
            seq,
        },
        lsn: Lsn(0x80 + u64::from(seq)),
        op,
        table: table.clone(),
        before,
        after,
    })
}

fn int(i: i32) -> Datum {
    Datum::Value(Value::Int4(i))
}

/// Runs one transaction of `changes` through the transform: its records, in order.
async fn records(t: Transform, changes: Vec<SourceEvent>) -> Result<Vec<Record>, TransformError> {
    let (tx, rx) = mpsc::channel(64);
    let (out, mut got) = mpsc::channel(64);
    let task = tokio::spawn(t.run(rx, out));
    tx.send(SourceEvent::Begin {
        xid: 7,
        commit_lsn: Lsn(0x100),
        commit_ts: 0,
    })
    .await
    .unwrap();
    for c in changes {
        tx.send(c).await.unwrap();
    }
    tx.send(SourceEvent::Commit {
        commit_lsn: Lsn(0x100),
        end_lsn: Lsn(0x108),
        commit_ts: 0,
    })
    .await
    .unwrap();
    drop(tx);
    task.await.unwrap()?;
    let mut records = Vec::new();
    while let Ok(o) = got.try_recv() {
        if let Output::Record(r) = o {
            records.push(r);
        }
    }
    Ok(records)
}

/// (topic suffix, has key, has value, header names) of the table topic's records.
fn shape(records: &[Record]) -> Vec<(bool, bool, Vec<&'static str>)> {
    records
        .iter()
        .filter(|r| r.topic.ends_with(".public.t"))
        .map(|r| {
            (
                r.key.is_some(),
                r.value.is_some(),
                r.headers.iter().map(|(k, _)| *k).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn skipped_operations_are_judged_per_record_written() {
    let t = table(vec![
        column("id", oid::INT4, true, false),
        column("v", oid::INT4, false, true),
    ]);
    let moved = || {
        vec![change(
            0,
            Op::Update,
            &t,
            Some(vec![int(1), Datum::Null]),
            Some(vec![int(2), int(5)]),
        )]
    };
    // Skipping updates skips no part of a key change: it is a delete and a create.
    let all = records(transform(r#"{"skipped_operations": ["u"]}"#), moved())
        .await
        .unwrap();
    assert_eq!(
        shape(&all),
        [
            (true, true, vec!["__debezium.newkey"]),
            (true, false, vec!["__debezium.newkey"]),
            (true, true, vec!["__debezium.oldkey"]),
        ]
    );
    let creates = records(transform(r#"{"skipped_operations": ["d"]}"#), moved())
        .await
        .unwrap();
    assert_eq!(shape(&creates), [(true, true, vec!["__debezium.oldkey"])]);
    let plain_update = vec![change(0, Op::Update, &t, None, Some(vec![int(1), int(6)]))];
    let none = records(transform(r#"{"skipped_operations": ["u"]}"#), plain_update)
        .await
        .unwrap();
    assert!(shape(&none).is_empty());
}

#[tokio::test]
async fn a_column_added_not_null_is_a_new_version_not_a_stop() {
    let v1 = table(vec![column("id", oid::INT4, true, false)]);
    let v2 = table(vec![
        column("id", oid::INT4, true, false),
        column("flag", oid::BOOL, false, false),
    ]);
    let out = records(
        transform("{}"),
        vec![
            change(0, Op::Insert, &v1, None, Some(vec![int(1)])),
            change(
                1,
                Op::Insert,
                &v2,
                None,
                Some(vec![int(2), Datum::Value(Value::Bool(true))]),
            ),
        ],
    )
    .await
    .expect("the added column does not stop the pipeline");
    assert_eq!(shape(&out).len(), 2);
    // Two value versions published; the second reads the first's data.
    let published: Vec<Schema> = out
        .iter()
        .filter(|r| r.topic.ends_with("._schemas"))
        .filter_map(|r| {
            let doc: serde_json::Value = serde_json::from_slice(r.value.as_deref()?).ok()?;
            (doc["subject"] == "p.public.t-value")
                .then(|| Schema::parse_str(doc["schema"].as_str()?).ok())?
        })
        .collect();
    assert_eq!(published.len(), 2);
    assert_eq!(encoding::backward(&published[0], &published[1]), Ok(()));
}

#[tokio::test]
async fn transaction_metadata_counts_what_the_table_topics_got() {
    let t = table(vec![
        column("id", oid::INT4, true, false),
        column("v", oid::INT4, false, true),
    ]);
    let out = records(
        transform(r#"{"provide_transaction_metadata": true}"#),
        vec![
            change(0, Op::Insert, &t, None, Some(vec![int(1), int(1)])),
            change(
                1,
                Op::Update,
                &t,
                Some(vec![int(1), Datum::Null]),
                Some(vec![int(2), int(1)]),
            ),
            change(2, Op::Delete, &t, Some(vec![int(2), Datum::Null]), None),
        ],
    )
    .await
    .unwrap();
    let txn: Vec<&Record> = out
        .iter()
        .filter(|r| r.topic.ends_with(".transaction"))
        .collect();
    assert_eq!(txn.len(), 2, "BEGIN and END");
    // c, then d + tombstone + c, then d + tombstone: four events, two tombstones.
    assert_eq!(shape(&out).len(), 6);
    let end = txn[1].value.as_deref().unwrap();
    let schema = Schema::parse(&transaction::value_schema()).unwrap();
    let prefix_len = 10; // single-object header
    let mut body = &end[prefix_len..];
    let v = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .unwrap();
    let apache_avro::types::Value::Record(f) = v else {
        panic!()
    };
    assert_eq!(f[0].1, apache_avro::types::Value::String("END".into()));
    assert_eq!(f[1].1, apache_avro::types::Value::String("7:256".into()));
    assert_eq!(
        f[2].1,
        apache_avro::types::Value::Union(1, Box::new(apache_avro::types::Value::Long(4)))
    );
}

#[tokio::test]
async fn a_skipped_change_is_not_encoded_so_its_key_cannot_stop_the_pipeline() {
    let t = table(vec![column("id", oid::NUMERIC, true, false)]);
    let nan = || vec![Datum::Value(Value::Numeric("NaN".into()))];
    let skipped = records(
        transform(r#"{"skipped_operations": ["c"]}"#),
        vec![change(0, Op::Insert, &t, None, Some(nan()))],
    )
    .await
    .expect("a skipped insert is never encoded");
    assert!(shape(&skipped).is_empty());
    // Written, the same key has no key form: the pipeline stops naming the column.
    let err = records(
        transform("{}"),
        vec![change(0, Op::Insert, &t, None, Some(nan()))],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("public.t.id"), "{err}");
}
