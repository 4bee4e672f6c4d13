"""Reads Freshet's topics as a consumer written for Debezium would, with the official
Confluent client and fastavro; Freshet's own decoder plays no part.

Every record is decoded twice: once with a reader schema written by hand from Debezium's
PostgreSQL connector documentation (below: envelope, source block, column types; it does
not know Freshet's `freshet` field, so Avro schema resolution must skip it), and once with
the writer's own schema, for Freshet's field. Prints one JSON line per record.

usage: debezium.py registry BROKERS PREFIX REGISTRY_URL TABLE_RECORDS TXN_RECORDS
       debezium.py single   BROKERS PREFIX SCHEMA_TOPIC TABLE_RECORDS TXN_RECORDS

registry: DeserializingConsumer with AvroDeserializer for keys and values (Confluent wire
format, schemas from the registry). single: fastavro with the writer schema found by its
single-object fingerprint (CRC-64-AVRO of the Parsing Canonical Form) in the schema topic.
"""

import base64
import io
import json
import sys

from confluent_kafka import DeserializingConsumer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader

from kafka_read import MAGIC, assign_all, base_conf, poll_all, read_all, schemas_by_fingerprint

TABLE = "types"


def optional(name, ty):
    return {"name": name, "type": ["null", ty], "default": None}


def semantic(base, name, **params):
    s = {"type": base, "connect.version": 1, "connect.name": name}
    if params:
        s["connect.parameters"] = params
    return s


def value_schema(ns):
    """public.types as Debezium documents its PostgreSQL mapping (default settings:
    time.precision.mode=adaptive, decimal.handling.mode=precise)."""
    decimal = lambda p, s: {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s,
                            "connect.name": "org.apache.kafka.connect.data.Decimal"}
    return {
        "type": "record", "name": "Value", "namespace": ns, "fields": [
            {"name": "id", "type": "int"},                                   # integer NOT NULL
            optional("b", "boolean"),                                        # boolean
            optional("i2", {"type": "int", "connect.type": "int16"}),        # smallint: INT16
            {"name": "i8", "type": "long"},                                  # bigint NOT NULL
            optional("f4", "float"),                                         # real: FLOAT32
            optional("f8", "double"),                                        # double precision
            optional("n", {"type": "record", "name": "VariableScaleDecimal",  # numeric
                           "namespace": "io.debezium.data",
                           "fields": [{"name": "scale", "type": "int"},
                                      {"name": "value", "type": "bytes"}]}),
            optional("n2", decimal(12, 3)),                                  # numeric(12,3)
            optional("m", decimal(64, 2)),                                   # money: scale 2
            optional("t", "string"),                                         # text
            optional("big", "string"),                                       # text (TOASTed)
            optional("by", "bytes"),                                         # bytea
            optional("d", semantic("int", "io.debezium.time.Date")),
            optional("tm", semantic("long", "io.debezium.time.MicroTime")),
            optional("ts", semantic("long", "io.debezium.time.MicroTimestamp")),
            optional("tz", semantic("string", "io.debezium.time.ZonedTimestamp")),
            optional("iv", semantic("long", "io.debezium.time.MicroDuration")),
            optional("u", semantic("string", "io.debezium.data.Uuid")),
            optional("j", semantic("string", "io.debezium.data.Json")),
            optional("jb", semantic("string", "io.debezium.data.Json")),
            optional("e", semantic("string", "io.debezium.data.Enum")),
            optional("ai", {"type": "array", "items": ["null", "int"]}),
            optional("at", {"type": "array", "items": ["null", "string"]}),
            optional("bits", semantic("bytes", "io.debezium.data.Bits", length="3")),
            optional("ttz", semantic("string", "io.debezium.time.ZonedTime")),
            optional("inet", "string"),
        ]}


def envelope_schema(prefix):
    ns = f"{prefix}.public.{TABLE}"
    return {
        "type": "record", "name": "Envelope", "namespace": ns, "fields": [
            optional("before", value_schema(ns)),
            optional("after", f"{ns}.Value"),
            {"name": "source", "type": {
                "type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
                "fields": [
                    {"name": "version", "type": "string"},
                    {"name": "connector", "type": "string"},
                    {"name": "name", "type": "string"},
                    {"name": "ts_ms", "type": "long"},
                    {"name": "snapshot", "type": [semantic("string", "io.debezium.data.Enum"), "null"],
                     "default": "false"},
                    {"name": "db", "type": "string"},
                    optional("sequence", "string"),
                    optional("ts_us", "long"),
                    optional("ts_ns", "long"),
                    {"name": "schema", "type": "string"},
                    {"name": "table", "type": "string"},
                    optional("txId", "long"),
                    optional("lsn", "long"),
                    optional("xmin", "long"),
                ]}},
            optional("transaction", {
                "type": "record", "name": "block", "namespace": "event", "fields": [
                    {"name": "id", "type": "string"},
                    {"name": "total_order", "type": "long"},
                    {"name": "data_collection_order", "type": "long"}]}),
            {"name": "op", "type": "string"},
            optional("ts_ms", "long"),
            optional("ts_us", "long"),
            optional("ts_ns", "long"),
        ]}


def key_schema(prefix):
    return {"type": "record", "name": "Key", "namespace": f"{prefix}.public.{TABLE}",
            "fields": [{"name": "id", "type": "int"}]}


TRANSACTION_KEY = {"type": "record", "name": "TransactionMetadataKey",
                   "namespace": "io.debezium.connector.common",
                   "fields": [{"name": "id", "type": "string"}]}
TRANSACTION_VALUE = {
    "type": "record", "name": "TransactionMetadataValue", "namespace": "io.debezium.connector.common",
    "fields": [
        {"name": "status", "type": "string"},
        {"name": "id", "type": "string"},
        optional("event_count", "long"),
        optional("data_collections", {"type": "array", "items": ["null", {
            "type": "record", "name": "collection", "namespace": "event",
            "fields": [{"name": "data_collection", "type": "string"},
                       {"name": "event_count", "type": "long"}]}]}),
        {"name": "ts_ms", "type": "long"},
    ]}


def plain(value):
    """JSON-ready: bytes as base64, decimals as their text."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def line(m, key, debezium, freshet):
    return {
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "key_bytes": m.key().hex() if m.key() is not None else None,
        "headers": {k: v.hex() for k, v in (m.headers() or [])},
        "key": plain(key),
        "debezium": plain(debezium),
        "freshet": plain(freshet),
    }


def registry_mode(brokers, prefix, url, counts):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    client = SchemaRegistryClient({"url": url})
    for topic, reader_key, reader_value, expect in counts(prefix):
        # The hand-written Debezium reader schemas: resolution against each writer schema.
        conf = base_conf(brokers)
        conf["key.deserializer"] = AvroDeserializer(client, json.dumps(reader_key))
        conf["value.deserializer"] = AvroDeserializer(client, json.dumps(reader_value))
        debezium = DeserializingConsumer(conf)
        assign_all(debezium, topic)
        read = poll_all(debezium, topic, expect)
        # The raw records (key bytes, headers), and the writer's own schema for Freshet's field.
        writer = AvroDeserializer(client)
        raw = {(m.partition(), m.offset()): m for m in read_all(brokers, topic, expect)}
        for m in read:
            r = raw[(m.partition(), m.offset())]
            own = writer(r.value(), SerializationContext(topic, MessageField.VALUE))
            print(json.dumps(line(r, m.key(), m.value(), own and own.get("freshet")), sort_keys=True))


def single_mode(brokers, prefix, schema_topic, counts):
    schemas = schemas_by_fingerprint(brokers, schema_topic)

    def decode(payload, reader, what):
        if payload is None:
            return None, None
        if payload[:2] != MAGIC:
            sys.exit(f"{what}: not single-object encoded")
        writer = schemas.get(payload[2:10])
        if writer is None:
            sys.exit(f"{what}: fingerprint {payload[2:10].hex()} is not in {schema_topic}")
        as_debezium = schemaless_reader(io.BytesIO(payload[10:]), writer, parse_schema(reader))
        own = schemaless_reader(io.BytesIO(payload[10:]), writer)
        return as_debezium, own

    for topic, reader_key, reader_value, expect in counts(prefix):
        for m in read_all(brokers, topic, expect):
            at = f"{topic} partition {m.partition()} offset {m.offset()}"
            key, _ = decode(m.key(), reader_key, at + " key")
            value, own = decode(m.value(), reader_value, at + " value")
            print(json.dumps(line(m, key, value, own and own.get("freshet")), sort_keys=True))


def main():
    mode, brokers, prefix, where = sys.argv[1:5]
    table_records, txn_records = int(sys.argv[5]), int(sys.argv[6])

    def counts(prefix):
        return [
            (f"{prefix}.public.{TABLE}", key_schema(prefix), envelope_schema(prefix), table_records),
            (f"{prefix}.transaction", TRANSACTION_KEY, TRANSACTION_VALUE, txn_records),
        ]

    if mode == "registry":
        registry_mode(brokers, prefix, where, counts)
    else:
        single_mode(brokers, prefix, where, counts)


if __name__ == "__main__":
    main()
