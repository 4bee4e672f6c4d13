"""The freshness probe: how accurate is what Freshet reports?

Writes one row into public.probe every INTERVAL seconds (PROBES of them) and watches, from
outside, when the row is really there at each stage: in its Kafka topic (the official
Confluent client), in a Parquet object of the lake (pyarrow), in the warehouse (a query). Beside
that it polls /v1/freshness and notes when Freshet first claims each stage holds the row (the
stage's watermark LSN past the row's commit LSN, read from the record's `freshet.lsn` header).

For each stage it prints, over the probes: commit -> really there (the true freshness), commit
-> claimed (what Freshet reports), claimed - really there (how late the report is; negative
would be a false claim), and the count of claims made before the row was there (must be 0).
The captured stage has no outside view: only its claim is printed.

usage: bench-freshness.py SOURCE_URL WAREHOUSE_URL BROKERS TOPIC LAKE_DIR API_PORT
"""

import json
import math
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

source_url, warehouse_url, brokers, topic, lake_dir, api_port = sys.argv[1:7]
PROBES = int(os.environ.get("PROBES", "30"))
INTERVAL = float(os.environ.get("INTERVAL", "2"))
POLL = 0.02
# The outside view's own resolution: each watcher sees a row up to one poll (and its own
# query) after it is there. A claim earlier than that before the row was seen is early.
TOLERANCE = 0.1
STAGES = ["captured", "kafka", "lake", "loaded"]

commits = {}  # probe id -> commit time (the client's clock, as COMMIT returned)
seen = {s: {} for s in ("kafka", "lake", "loaded")}  # stage -> probe id -> first seen
commit_lsn = {}  # probe id -> the commit's LSN (from the Kafka record)
claims = []  # (time, {stage: watermark LSN})
done = threading.Event()


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def zigzag_int(data):
    """The one int of an Avro record `{id: int}`, after the single-object header."""
    value, shift = 0, 0
    for b in data:
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return (value >> 1) ^ -(value & 1)


def watch_kafka():
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"probe-{time.time_ns()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    while not done.is_set():
        m = c.poll(POLL)
        if m is None or m.error() or m.key() is None:
            continue
        now = time.time()
        key = m.key()
        assert key[:2] == b"\xc3\x01", f"not a single-object key: {key!r}"
        i = zigzag_int(key[10:])
        seen["kafka"].setdefault(i, now)
        headers = dict(m.headers() or [])
        commit_lsn[i] = lsn(headers["freshet.lsn"].decode())
    c.close()


def watch_lake():
    read = set()
    while not done.is_set():
        for f in Path(lake_dir).rglob("*.parquet"):
            if f in read:
                continue
            now = time.time()
            try:
                ids = pq.read_table(f, columns=["id"]).column("id").to_pylist()
            except Exception:
                continue  # still being renamed into place: read it next round
            read.add(f)
            for i in ids:
                seen["lake"].setdefault(i, now)
        time.sleep(POLL)


def watch_warehouse():
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        while not done.is_set():
            try:
                rows = conn.execute("SELECT id FROM analytics.probe").fetchall()
            except psycopg.errors.UndefinedTable:
                rows = []
            now = time.time()
            for (i,) in rows:
                seen["loaded"].setdefault(i, now)
            time.sleep(POLL)


def watch_claims():
    url = f"http://127.0.0.1:{api_port}/v1/freshness"
    while not done.is_set():
        try:
            doc = json.load(urllib.request.urlopen(url, timeout=2))
        except (OSError, ValueError):
            time.sleep(POLL)
            continue
        now = time.time()
        for t in doc["tables"]:
            if t["table"] == "public.probe":
                claims.append((now, {s["stage"]: lsn(s["watermark_lsn"]) for s in t["stages"]
                                     if s["watermark_lsn"]}))
        time.sleep(POLL)


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(1, min(len(values), math.ceil(p / 100 * len(values)))) - 1]


watchers = [threading.Thread(target=f, daemon=True)
            for f in (watch_kafka, watch_lake, watch_warehouse, watch_claims)]
for w in watchers:
    w.start()
with psycopg.connect(source_url, autocommit=True) as conn:
    for i in range(1, PROBES + 1):
        conn.execute("INSERT INTO public.probe (id) VALUES (%s)", (i,))
        commits[i] = time.time()
        time.sleep(INTERVAL)
# The last probe's way to the warehouse.
deadline = time.time() + 60
while len(seen["loaded"]) < PROBES and time.time() < deadline:
    time.sleep(0.2)
time.sleep(2)
done.set()
for w in watchers:
    w.join(timeout=5)

print(f"{PROBES} probes, one every {INTERVAL:g} s; times in ms from the commit "
      "(p50 / p95 / max over the probes)")
print(f"{'stage':9} {'really there':>22} {'claimed by Freshet':>24} {'claim - there':>24} {'early claims':>13}")
print(f"(early: claimed more than {TOLERANCE * 1000:.0f} ms, the outside view's resolution, before the row was seen)")
for stage in STAGES:
    there, claimed, late, early, missing = [], [], [], 0, 0
    for i, committed in commits.items():
        at = seen.get(stage, {}).get(i)
        c_lsn = commit_lsn.get(i)
        claim = None
        if c_lsn is not None:
            claim = next((t for t, marks in claims if marks.get(stage, 0) > c_lsn), None)
        if claim is None or (stage != "captured" and at is None):
            missing += 1
            continue
        claimed.append((claim - committed) * 1000)
        if at is not None:
            there.append((at - committed) * 1000)
            late.append((claim - at) * 1000)
            early += claim < at - TOLERANCE
    fmt = lambda v: f"{pct(v, 50):6.0f} / {pct(v, 95):6.0f} / {max(v) if v else float('nan'):6.0f}"
    print(f"{stage:9} {fmt(there) if there else '(no outside view)':>22} {fmt(claimed):>24} "
          f"{fmt(late) if late else '-':>24} {early:>13}" + (f"   (earliest claim {min(late):.0f} ms)" if late else "") + (f"   ({missing} probes unseen)" if missing else ""))
