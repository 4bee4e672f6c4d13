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

from fastavro import schemaless_reader
from fastavro.schema import to_parsing_canonical_form

from kafka_read import MAGIC, read_all, schemas_by_fingerprint


def main():
    brokers, topic, schema_topic, expect = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    schemas = schemas_by_fingerprint(brokers, schema_topic)

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
