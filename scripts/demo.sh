#!/usr/bin/env bash
# The demo, as far as the pipeline reaches today: a throwaway PostgreSQL with the AtlasCo
# schema and some data and a Tansu broker, `freshet check`, then `freshet run` with both
# halves: capture into Kafka as Avro (the initial snapshot, then the stream), and the sink
# batching the topics into Parquet in a local lake and loading it into the warehouse (a
# second database of the same PostgreSQL), while `freshet loadgen run` writes. Every few
# seconds: live freshness, the lake's files and the warehouse's rows and lag per table; then
# the warehouse catching up and a query on it, the records as a consumer decodes them, and
# the lake as pyarrow reads it. `scripts/demo.sh --s3` puts the lake in S3 (moto's server)
# instead of a directory.
# DEMO_SECONDS (default 30) long; Ctrl-C stops early.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install.sh
cargo build --locked --quiet
freshet="$CARGO_TARGET_DIR/debug/freshet"
seconds=${DEMO_SECONDS:-30}
s3=
case "${1:-}" in
    --s3) s3=1 ;;
    "") ;;
    *) echo "usage: scripts/demo.sh [--s3]" >&2; exit 2 ;;
esac

run=$(freshet_run_dir demo)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    scripts/kafka.sh stop "$run/kafka" || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT

FRESHET_SOURCE_URL=$(scripts/pg.sh start "$run/pg")
export FRESHET_SOURCE_URL FRESHET_DATA_DIR="$run"
echo "== PostgreSQL 15 (wal_level=logical) at $FRESHET_SOURCE_URL"

FRESHET_WAREHOUSE_URL="${FRESHET_SOURCE_URL%/*}/warehouse"
psql -X -q "$FRESHET_SOURCE_URL" -c "CREATE DATABASE warehouse"
export FRESHET_WAREHOUSE_URL
echo "== the warehouse: database warehouse of the same server, views in schema analytics"

echo "== freshet loadgen fill: 4 tenants x 1000 entities x 10 attributes (applies schema/schema.sql)"
"$freshet" loadgen fill --tenants 4 --entities 1000 --attributes 10 --catalog 1000

FRESHET_KAFKA_BROKERS=$(scripts/kafka.sh start "$run/kafka")
export FRESHET_KAFKA_BROKERS
echo "== Tansu (Kafka protocol, memory storage) at $FRESHET_KAFKA_BROKERS"

pipeline=pipelines/dev.yaml
lake="$run/lake"
if [ -n "$s3" ]; then
    s3_port=$(free_port)
    "$FRESHET_VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$s3_port" >"$run/moto.log" 2>&1 &
    pids+=($!)
    export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3_port))" 2>/dev/null; do sleep 0.2; done
    "$FRESHET_VENV/bin/python" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$s3_port').create_bucket(Bucket='lake')"
    # The same pipeline with its lake in the bucket.
    pipeline="$run/pipeline.yaml"
    sed -e "s|^  store: .*|  store: s3://lake/cdc\n  s3: { endpoint: 'http://127.0.0.1:$s3_port', path_style: true, region: us-east-1 }|" \
        pipelines/dev.yaml >"$pipeline"
    lake="s3://lake/cdc"
    echo "== moto (S3 API, in memory) at http://127.0.0.1:$s3_port, bucket lake"
fi

echo "== freshet check --pipeline $pipeline"
"$freshet" check --pipeline "$pipeline"

metrics_port=$(free_port)
echo "== freshet run --pipeline $pipeline   (log: $run/freshet.log, metrics: http://127.0.0.1:$metrics_port/metrics)"
echo "   capture: PostgreSQL -> Kafka; sink: Kafka -> Parquet in $lake -> the warehouse"
echo "   each change is loaded within a third of its table's freshness budget: attributes (alerts) at once, entities and values (analytics, 30 s) within 10 s, tenants (exports, 15 min) within 5 min"
"$freshet" run --pipeline "$pipeline" --state-dir "$run" --listen "127.0.0.1:$metrics_port" >"$run/freshet.log" 2>&1 &
freshet_pid=$!
pids+=($freshet_pid)

echo "== freshet loadgen run: 1000 rows/s for ${seconds}s"
"$freshet" loadgen run --rate 1000 --duration "${seconds}s" >"$run/loadgen.log" 2>&1 &
load=$!
pids+=($load)

# Live freshness: the kafka stage logs, every 5 s, how long after their commit in PostgreSQL
# the window's transactions were acknowledged by Kafka; beside it, the WAL the slot holds and,
# from /metrics, the lake's objects and rows per table.
python3 - "$FRESHET_SOURCE_URL" "$load" "$run/freshet.log" "$metrics_port" "$FRESHET_WAREHOUSE_URL" <<'EOF'
import os, re, subprocess, sys, time, urllib.request
url, load, log, port, warehouse_url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
seen = 0

def warehouse():
    # Rows per view, and how far behind the source the newest loaded change is.
    out = subprocess.run(["psql", "-X", "-At", "-F", " ", warehouse_url, "-c",
        "SELECT c.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM analytics.%I', c.relname), false, true, '')))[1]::text, "
        "(xpath('/row/lag/text()', query_to_xml(format('SELECT round(extract(epoch FROM now() - max(_freshet_commit_ts))::numeric, 1) AS lag FROM analytics_freshet.%I', c.relname), false, true, '')))[1]::text "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'analytics' AND c.relkind = 'v' ORDER BY 1"],
        capture_output=True, text=True).stdout.split("\n")
    parts = [f"{l.split()[0]} {l.split()[1]} rows (newest {l.split()[2] if len(l.split()) > 2 else '-'} s old)" for l in out if l.strip()]
    return "  ".join(parts) or "nothing loaded yet"

def route():
    # Where the read router sends an analytics read of the values now, and why.
    try:
        import json
        d = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/route?table=atlasco.entity_values&class=analytics", timeout=2))
    except OSError:
        return "router not up yet"
    return f"{d['target']} ({d['reason']}, {d['observed_lag_ms']} ms behind: {d['detail']})"

def lake():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return "metrics not up yet"
    files, rows = {}, {}
    for line in text.splitlines():
        m = re.match(r'freshet_batcher_(files|rows)_written_total\{(.*)\} (\S+)', line)
        if m:
            table = re.search(r'table="([^"]+)"', m.group(2)).group(1).split(".")[-1]
            target = files if m.group(1) == "files" else rows
            target[table] = target.get(table, 0) + float(m.group(3))
    return "  ".join(f"{t} {int(files[t])} files/{int(rows.get(t, 0))} rows" for t in sorted(files)) or "no file yet"

while True:
    try:
        os.kill(load, 0)
    except OSError:
        break
    time.sleep(1)
    with open(log, errors="replace") as f:
        lines = f.readlines()
    for line in lines[seen:]:
        m = re.search(r"commit to delivery latency transactions=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) max_ms=([\d.]+)", line)
        if m:
            held = subprocess.run(["psql", "-X", "-At", url, "-c",
                "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) FROM pg_replication_slots WHERE slot_name = 'freshet_atlasco_dev'"],
                capture_output=True, text=True).stdout.strip()
            n, p50, p99, mx = m.groups()
            print(f"commit -> acknowledged by Kafka, last 5 s: {int(n):>5} txns  p50 {float(p50):7.1f} ms  p99 {float(p99):7.1f} ms  max {float(mx):7.1f} ms   slot holds {held}", flush=True)
            print(f"   lake so far: {lake()}", flush=True)
            print(f"   warehouse:   {warehouse()}", flush=True)
            print(f"   route an analytics read of entity_values (30 s): {route()}", flush=True)
    seen = len(lines)
EOF
tail -1 "$run/loadgen.log"

if ! kill -0 "$freshet_pid" 2>/dev/null; then
    echo "freshet exited early; its log:" >&2
    tail -20 "$run/freshet.log" >&2
    exit 1
fi

echo "== the warehouse catching up (entities and values: loaded within 10 s of their commit)"
count() { psql -X -At "$1" -c "SELECT count(*) FROM $2"; }
for _ in $(seq 1 60); do
    src=$(count "$FRESHET_SOURCE_URL" atlasco.entity_values)
    wh=$(count "$FRESHET_WAREHOUSE_URL" analytics.entity_values 2>/dev/null || echo 0)
    echo "   entity_values: source $src rows, warehouse $wh rows"
    [ "$src" = "$wh" ] && break
    sleep 2
done
echo "== freshet status --once: every table's freshness per stage against its budget"
"$freshet" status --once --url "http://127.0.0.1:$metrics_port" || true
echo "-- the read router, for an analytics read of the values (30 s), the primary only, and a read-your-writes token:"
token=$(psql -X -At "$FRESHET_SOURCE_URL" -c "SELECT pg_current_wal_insert_lsn()")
python3 - "$metrics_port" "$token" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
for q in ["class=analytics", "max_staleness=0ms", f"after_lsn={token}"]:
    d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/route?table=atlasco.entity_values&{q}", timeout=5))
    print(f"   {q:24} -> {d['target']:9} {d['reason']:16} {d['detail']}")
PY
echo "-- a query on the warehouse: the five attributes with the most values"
psql -X "$FRESHET_WAREHOUSE_URL" -c "
    SELECT a.name AS attribute, a.data_type AS type, count(*) AS entities,
           round(avg(coalesce(v.float_value, v.integer_value))::numeric, 2) AS average
    FROM analytics.entity_values v JOIN analytics.attributes a USING (attribute_id)
    GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 5"
echo "-- the source and the warehouse, side by side:"
for t in entities entity_values; do
    sum="SELECT count(*) || ' rows, checksum ' || coalesce(sum(hashtext(t::text)), 0) FROM (SELECT tenant_id, entity_id FROM %s) t"
    printf '   %-14s source: %s   warehouse: %s\n' "$t" \
        "$(psql -X -At "$FRESHET_SOURCE_URL" -c "$(printf "$sum" "atlasco.$t")")" \
        "$(psql -X -At "$FRESHET_WAREHOUSE_URL" -c "$(printf "$sum" "analytics.$t")")"
done
echo "== stopping freshet (SIGTERM): capture drains, waits for Kafka, confirms; the sink writes its open files"
kill -TERM "$freshet_pid"
wait "$freshet_pid" || true
grep -E "snapshot finished|stopped cleanly|batcher stopped" "$run/freshet.log" || true

echo "== what arrived in Kafka (freshet tail, decoded through the schema topic)"
for t in atlasco.tenants atlasco.attributes atlasco.entities atlasco.entity_values; do
    "$freshet" tail --pipeline "$pipeline" --table "$t" >"$run/$t.jsonl"
    python3 - "$run/$t.jsonl" "$t" <<'EOF'
import collections, json, sys
ops = collections.Counter(json.loads(l)["op"] for l in open(sys.argv[1]))
print(f"{sys.argv[2]:<24} {sum(ops.values()):>7} records  " + " ".join(f"{k}={v}" for k, v in sorted(ops.items())))
EOF
done
echo "-- the last value change, as a consumer decodes it:"
tail -1 "$run/atlasco.entity_values.jsonl" | python3 -c 'import json,sys; [print(json.dumps(json.loads(l), indent=1, sort_keys=True)) for l in sys.stdin]'

echo "== the lake ($lake), read back with pyarrow"
if [ -n "$s3" ]; then
    "$FRESHET_VENV/bin/python" tests/lake/read_lake.py s3 "http://127.0.0.1:$s3_port" lake cdc/ >"$run/lake.jsonl"
else
    "$FRESHET_VENV/bin/python" tests/lake/read_lake.py dir "$lake" >"$run/lake.jsonl"
fi
python3 - "$run/lake.jsonl" <<'EOF'
import collections, json, sys
objects, rows, size = collections.Counter(), collections.Counter(), collections.Counter()
example = None
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "object" in d:
        table = d["object"]["key"].split("/")[0]
        objects[table] += 1
        rows[table] += d["object"]["rows"]
        size[table] += d["object"]["size"]
        example = d["object"]
for t in sorted(objects):
    print(f"{t:<24} {objects[t]:>4} objects {rows[t]:>8} rows {size[t] / 1e6:8.2f} MB")
if example:
    print("-- one object:", example["key"])
    print("   " + ", ".join(f"{k} {v}" for k, v in example["types"].items()))
EOF
