"""Reads Freshet's lake back with pyarrow, as a user of the lake would, and prints one JSON
line per object ({"object": ...}) and per row ({"row": ...}) in the jsonl output's shape
(lsn, seq, op, table, before, after, unchanged), for the Rust tests to replay and compare.

usage: read_lake.py dir PATH
       read_lake.py s3 ENDPOINT BUCKET PREFIX   (credentials from AWS_* in the environment)
"""
import base64
import datetime
import decimal
import io
import json
import math
import os
import sys
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

pa.set_cpu_count(1)
pa.set_io_thread_count(1)


def objects_in_dir(root):
    import os
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                yield os.path.relpath(path, root), fh.read()


def objects_in_s3(endpoint, bucket, prefix):
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            yield o["Key"][len(prefix):].lstrip("/"), body


EPOCH = datetime.datetime(1970, 1, 1)


def temporal(kind, v, tz=False):
    """ISO 8601 text of a date (days), timestamp or time (microseconds); outside Python's
    years 1-9999 the raw integer, tagged."""
    try:
        if kind == "date":
            return (EPOCH + datetime.timedelta(days=v)).date().isoformat()
        if kind == "time":
            return (datetime.datetime.min + datetime.timedelta(microseconds=v)).time().isoformat()
        text = (EPOCH + datetime.timedelta(microseconds=v)).isoformat()
        return text + "+00:00" if tz else text
    except OverflowError:
        return {"out_of_range": v}


def lsn_text(v):
    return "%X/%X" % (v >> 32, v & 0xFFFFFFFF)


def render(v):
    """A value as to_jsonb renders it, as far as JSON allows."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, decimal.Decimal):
        # Exact: the tests compare decimals by their text.
        return str(v)
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return [render(x) for x in v]
    raise TypeError("unexpected value %r" % (v,))


def rows(key, body):
    # One thread: a reader that exits while Arrow's pool still runs can abort.
    table = pq.read_table(io.BytesIO(body), use_threads=False)
    meta = pq.read_metadata(io.BytesIO(body))
    yield {"object": {
        "key": key,
        "size": len(body),
        "rows": table.num_rows,
        "row_groups": meta.num_row_groups,
        "compression": meta.row_group(0).column(0).compression if meta.num_row_groups else None,
        "types": {f.name: str(f.type) for f in table.schema},
    }}
    schema_table = key.split("/")[0]
    data = [f.name for f in table.schema if not f.name.startswith("_freshet_")]
    # Temporal columns are read as the integers Parquet holds and rendered here: Python's
    # datetime stops at year 1, PostgreSQL's (and Arrow's) do not.
    decoded = set()
    for i, f in enumerate(table.schema):
        t = f.type
        if pa.types.is_date32(t):
            kind, ints = "date", table.column(i).cast(pa.int32())
        elif pa.types.is_timestamp(t) and f.name != "_freshet_commit_ts":
            kind, ints = "ts", table.column(i).cast(pa.int64())
        elif pa.types.is_time64(t):
            kind, ints = "time", table.column(i).cast(pa.int64())
        else:
            continue
        tz = pa.types.is_timestamp(t) and t.tz is not None
        texts = [None if v is None else temporal(kind, v, tz) for v in ints.to_pylist()]
        table = table.set_column(i, f.name, pa.array([json.dumps(x) for x in texts], pa.string()))
        decoded.add(f.name)
    for r in table.to_pylist():
        exact = json.loads(r["_freshet_exact"]) if r["_freshet_exact"] else {}
        image = {}
        for c in data:
            if c in exact:
                image[c] = exact[c]
            elif c in decoded:
                image[c] = json.loads(r[c])
            else:
                image[c] = render(r[c])
        unchanged = json.loads(r["_freshet_unchanged"]) if r["_freshet_unchanged"] else []
        for c in unchanged:
            image.pop(c, None)
        op = r["_freshet_op"]
        before = after = None
        if op == "d":
            before = {c: v for c, v in image.items() if v is not None}
        elif op != "t":
            after = image
        if r.get("_freshet_before"):
            before = json.loads(r["_freshet_before"])
        schema, _, name = (unquote(x) for x in schema_table.partition("."))
        line = {
            "lsn": lsn_text(r["_freshet_commit_lsn"]),
            "seq": r["_freshet_sequence"],
            "op": op,
            "schema": schema,
            "table": name,
            "before": before,
            "after": after,
            "unchanged": unchanged,
            "commit_ts": r["_freshet_commit_ts"].isoformat(),
            "partition": r["_freshet_kafka_partition"],
            "offset": r["_freshet_kafka_offset"],
            "object": key,
        }
        if "_freshet_attribute_name" in r:
            line["attribute"] = [r["_freshet_attribute_name"], r["_freshet_attribute_type"]]
        yield {"row": line}


def main():
    if sys.argv[1] == "dir":
        source = objects_in_dir(sys.argv[2])
    else:
        source = objects_in_s3(sys.argv[2], sys.argv[3], sys.argv[4])
    out = sys.stdout
    for key, body in source:
        if key.endswith(".manifest"):
            out.write(json.dumps({"manifest": {"key": key, "doc": json.loads(body)}}) + "\n")
            continue
        if not key.endswith(".parquet"):
            out.write(json.dumps({"stranger": key}) + "\n")
            continue
        for line in rows(key, body):
            out.write(json.dumps(line) + "\n")


main()
# Arrow's thread pools can abort the process in the interpreter's teardown ("terminate called
# without an active exception"), after every line is written: leave without the teardown.
sys.stdout.flush()
os._exit(0)
