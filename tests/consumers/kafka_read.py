"""What the consumer scripts share: reading whole topics with the official Confluent client,
and the single-object schemas of a schema topic by their fingerprint (CRC-64-AVRO of the
Parsing Canonical Form, as the Avro specification defines it)."""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"


def base_conf(brokers):
    return {"bootstrap.servers": brokers, "group.id": f"freshet-test-{time.time_ns()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}


def assign_all(consumer, topic):
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])


def poll_all(consumer, what, expect, idle=3.0, limit=90.0):
    """At least `expect` records, then until `idle` seconds pass without one; closes."""
    messages, started, last = [], time.time(), time.time()
    while time.time() - started < limit:
        m = consumer.poll(0.2)
        if m is None:
            if len(messages) >= expect and time.time() - last > idle:
                break
            continue
        if m.error():
            sys.exit(f"{what}: {m.error()}")
        messages.append(m)
        last = time.time()
    consumer.close()
    if len(messages) < expect:
        sys.exit(f"{what}: {len(messages)} records, expected at least {expect}")
    return messages


def read_all(brokers, topic, expect):
    consumer = Consumer(base_conf(brokers))
    assign_all(consumer, topic)
    return poll_all(consumer, topic, expect)


def schemas_by_fingerprint(brokers, schema_topic):
    """fingerprint bytes -> parsed schema; exits if one fingerprint names two schemas."""
    schemas = {}
    for m in read_all(brokers, schema_topic, 1):
        schema = parse_schema(json.loads(json.loads(m.value())["schema"]))
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        if fp in schemas and schemas[fp] != schema:
            sys.exit(f"fingerprint {fp.hex()} names two schemas in {schema_topic}")
        schemas[fp] = schema
    return schemas
