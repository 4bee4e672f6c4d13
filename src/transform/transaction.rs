//! Debezium's transaction metadata (`provide_transaction_metadata`): a BEGIN and an END
//! record per transaction that wrote records, on `{topic_prefix}.transaction`, keyed by the
//! transaction id; END counts the events per table.

use serde_json::{json, Value as Json};

use super::avro::{put_long, put_str};

pub fn topic(prefix: &str) -> String {
    format!("{prefix}.transaction")
}

pub fn key_schema() -> Json {
    json!({"type": "record", "name": "TransactionMetadataKey", "namespace": "io.debezium.connector.common",
           "fields": [{"name": "id", "type": "string"}],
           "connect.version": 1, "connect.name": "io.debezium.connector.common.TransactionMetadataKey"})
}

pub fn value_schema() -> Json {
    json!({"type": "record", "name": "TransactionMetadataValue", "namespace": "io.debezium.connector.common",
           "fields": [
               {"name": "status", "type": "string"},
               {"name": "id", "type": "string"},
               {"name": "event_count", "type": ["null", "long"], "default": null},
               {"name": "data_collections", "default": null, "type": ["null", {"type": "array", "items": ["null", {
                   "type": "record", "name": "collection", "namespace": "event",
                   "fields": [{"name": "data_collection", "type": "string"}, {"name": "event_count", "type": "long"}],
                   "connect.version": 1, "connect.name": "event.collection"}]}]},
               {"name": "ts_ms", "type": "long"}
           ],
           "connect.version": 1, "connect.name": "io.debezium.connector.common.TransactionMetadataValue"})
}

/// The key of transaction `id`, after `prefix`.
pub fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut out = prefix.to_vec();
    put_str(&mut out, id);
    out
}

/// A BEGIN record's value.
pub fn begin(prefix: &[u8], id: &str, ts_ms: i64) -> Vec<u8> {
    let mut out = prefix.to_vec();
    put_str(&mut out, "BEGIN");
    put_str(&mut out, id);
    put_long(&mut out, 0);
    put_long(&mut out, 0);
    put_long(&mut out, ts_ms);
    out
}

/// An END record's value: the events in all, and per `schema.table`.
pub fn end(
    prefix: &[u8],
    id: &str,
    total: i64,
    per_table: &[(String, i64)],
    ts_ms: i64,
) -> Vec<u8> {
    let mut out = prefix.to_vec();
    put_str(&mut out, "END");
    put_str(&mut out, id);
    put_long(&mut out, 1);
    put_long(&mut out, total);
    put_long(&mut out, 1);
    if !per_table.is_empty() {
        put_long(&mut out, per_table.len() as i64);
        for (table, count) in per_table {
            put_long(&mut out, 1);
            put_str(&mut out, table);
            put_long(&mut out, *count);
        }
    }
    put_long(&mut out, 0);
    put_long(&mut out, ts_ms);
    out
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value as Avro;
    use apache_avro::Schema;

    use super::*;

    fn read(schema: &Json, bytes: &[u8]) -> Avro {
        let schema = Schema::parse(schema).unwrap();
        let mut body = bytes;
        let v = GenericDatumReader::builder(&schema)
            .build()
            .and_then(|r| r.read_value(&mut body))
            .unwrap();
        assert!(body.is_empty());
        v
    }

    #[test]
    fn begin_and_end_records_read_with_their_schemas() {
        let end = read(
            &value_schema(),
            &end(
                &[],
                "7:42",
                3,
                &[("public.a".into(), 2), ("public.b".into(), 1)],
                99,
            ),
        );
        let Avro::Record(f) = end else { panic!() };
        assert_eq!(f[0].1, Avro::String("END".into()));
        assert_eq!(f[2].1, Avro::Union(1, Box::new(Avro::Long(3))));
        let Avro::Union(1, collections) = &f[3].1 else {
            panic!("{:?}", f[3])
        };
        let Avro::Array(items) = &**collections else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        let begin = read(&value_schema(), &begin(&[], "7:42", 99));
        let Avro::Record(f) = begin else { panic!() };
        assert_eq!(f[2].1, Avro::Union(0, Box::new(Avro::Null)));
        assert_eq!(f[4].1, Avro::Long(99));
        assert_eq!(
            read(&key_schema(), &key(&[], "7:42")),
            Avro::Record(vec![("id".into(), Avro::String("7:42".into()))])
        );
    }
}
