#!/usr/bin/env bash
# The demo, as far as the pipeline reaches today: a throwaway PostgreSQL with the AtlasCo
# schema and some data and a Tansu broker, `freshet check`, then `freshet run` capturing
# into Kafka as Avro (the initial snapshot, then the stream) while `freshet loadgen run`
# writes, with live freshness every two seconds, then the records as a consumer decodes them.
# DEMO_SECONDS (default 30) long; Ctrl-C stops early.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install.sh
cargo build --locked --quiet
freshet="$CARGO_TARGET_DIR/debug/freshet"
seconds=${DEMO_SECONDS:-30}

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

echo "== freshet loadgen fill: 4 tenants x 1000 entities x 10 attributes (applies schema/schema.sql)"
"$freshet" loadgen fill --tenants 4 --entities 1000 --attributes 10 --catalog 1000

FRESHET_KAFKA_BROKERS=$(scripts/kafka.sh start "$run/kafka")
export FRESHET_KAFKA_BROKERS
echo "== Tansu (Kafka protocol, memory storage) at $FRESHET_KAFKA_BROKERS"

echo "== freshet check --pipeline pipelines/dev.yaml"
"$freshet" check --pipeline pipelines/dev.yaml

echo "== freshet run --pipeline pipelines/dev.yaml   (log: $run/freshet.log)"
"$freshet" run --pipeline pipelines/dev.yaml --state-dir "$run" >"$run/freshet.log" 2>&1 &
pids+=($!)

echo "== freshet loadgen run: 1000 rows/s for ${seconds}s"
"$freshet" loadgen run --rate 1000 --duration "${seconds}s" >"$run/loadgen.log" 2>&1 &
load=$!
pids+=($load)

# Live freshness: the kafka stage logs, every 5 s, how long after their commit in PostgreSQL
# the window's transactions were acknowledged by Kafka; beside it, the WAL the slot holds.
python3 - "$FRESHET_SOURCE_URL" "$load" "$run/freshet.log" <<'EOF'
import os, re, subprocess, sys, time
url, load, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = 0
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
    seen = len(lines)
EOF
tail -1 "$run/loadgen.log"

if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "freshet exited early; its log:" >&2
    tail -20 "$run/freshet.log" >&2
    exit 1
fi
echo "== stopping freshet (SIGTERM): it drains, waits for Kafka's acknowledgements, confirms"
kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
grep -E "snapshot finished|stopped cleanly" "$run/freshet.log" || true

echo "== what arrived in Kafka (freshet tail, decoded through the schema topic)"
for t in atlasco.tenants atlasco.attributes atlasco.entities atlasco.entity_values; do
    "$freshet" tail --pipeline pipelines/dev.yaml --table "$t" >"$run/$t.jsonl"
    python3 - "$run/$t.jsonl" "$t" <<'EOF'
import collections, json, sys
ops = collections.Counter(json.loads(l)["op"] for l in open(sys.argv[1]))
print(f"{sys.argv[2]:<24} {sum(ops.values()):>7} records  " + " ".join(f"{k}={v}" for k, v in sorted(ops.items())))
EOF
done
echo "-- the last value change, as a consumer decodes it:"
tail -1 "$run/atlasco.entity_values.jsonl" | python3 -c 'import json,sys; [print(json.dumps(json.loads(l), indent=1, sort_keys=True)) for l in sys.stdin]'
