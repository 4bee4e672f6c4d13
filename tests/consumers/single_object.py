"""Reads a registry-less Freshet topic as a Python service would: the official Confluent
client consumes it, and fastavro decodes each key and value with the writer schema found by
its fingerprint (CRC-64-AVRO of the Parsing Canonical Form, as the Avro specification's
single-object encoding defines it) among the schemas of the schema topic. Prints one JSON
line per record. Freshet's own decoder plays no part.

usage: single_object.py BROKERS TOPIC SCHEMA_TOPIC EXPECTED_RECORDS
"""

import io
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"


def read_all(brokers, topic, expect, idle=3.0, limit=90.0):
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"freshet-test-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, started, last = [], time.time(), time.time()
    while time.time() - started < limit:
        m = consumer.poll(0.2)
        if m is None:
            if len(messages) >= expect and time.time() - last > idle:
                break
            continue
        if m.error():
            sys.exit(f"{topic}: {m.error()}")
        messages.append(m)
        last = time.time()
    consumer.close()
    if len(messages) < expect:
        sys.exit(f"{topic}: {len(messages)} records, expected {expect}")
    return messages


def main():
    brokers, topic, schema_topic, expect = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    schemas = {}
    for m in read_all(brokers, schema_topic, 1):
        doc = json.loads(m.value())
        schema = parse_schema(json.loads(doc["schema"]))
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        if fp in schemas and schemas[fp] != schema:
            sys.exit(f"fingerprint {fp.hex()} names two schemas in {schema_topic}")
        schemas[fp] = schema

    def decode(payload, what):
        if payload is None:
            return None
        if payload[:2] != MAGIC:
            sys.exit(f"{what}: not single-object encoded: {payload[:2].hex()}")
        schema = schemas.get(payload[2:10])
        if schema is None:
            known = "\n".join(
                f"  {fp.hex()}: {to_parsing_canonical_form(s)}" for fp, s in schemas.items()
            )
            sys.exit(f"{what}: fingerprint {payload[2:10].hex()} is not in {schema_topic}:\n{known}")
        return {"schema": schema["name"], "record": schemaless_reader(io.BytesIO(payload[10:]), schema)}

    for m in read_all(brokers, topic, expect):
        at = f"{topic} partition {m.partition()} offset {m.offset()}"
        line = {
            "partition": m.partition(),
            "offset": m.offset(),
            "key": decode(m.key(), at + " key"),
            "value": decode(m.value(), at + " value"),
        }
        print(json.dumps(line, default=str, sort_keys=True))


if __name__ == "__main__":
    main()
