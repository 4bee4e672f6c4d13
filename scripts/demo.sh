#!/usr/bin/env bash
# The demo, as far as the pipeline reaches today: a throwaway PostgreSQL with the AtlasCo
# schema and some data, `freshet check`, then `freshet run` capturing into a jsonl file
# (the initial snapshot, then the stream) while `freshet loadgen run` writes, with live
# freshness every two seconds. DEMO_SECONDS (default 30) long; Ctrl-C stops early.
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
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT

FRESHET_SOURCE_URL=$(scripts/pg.sh start "$run/pg")
export FRESHET_SOURCE_URL FRESHET_DATA_DIR="$run"
echo "== PostgreSQL 15 (wal_level=logical) at $FRESHET_SOURCE_URL"

echo "== freshet loadgen fill: 4 tenants x 2500 entities x 20 attributes (applies schema/schema.sql)"
"$freshet" loadgen fill --tenants 4 --entities 2500 --attributes 20 --catalog 1000

echo "== freshet check --pipeline pipelines/dev.yaml"
"$freshet" check --pipeline pipelines/dev.yaml

sink="$run/changes.jsonl"
echo "== freshet run --pipeline pipelines/dev.yaml --sink jsonl:$sink   (log: $run/freshet.log)"
"$freshet" run --pipeline pipelines/dev.yaml --sink "jsonl:$sink" >"$run/freshet.log" 2>&1 &
pids+=($!)

echo "== freshet loadgen run: 1000 rows/s for ${seconds}s"
"$freshet" loadgen run --rate 1000 --duration "${seconds}s" >"$run/loadgen.log" 2>&1 &
load=$!
pids+=($load)

# Freshness as a reader of the sink sees it: how old the newest captured commit is, and how
# much WAL the slot still holds.
show() {
    python3 - "$sink" <<'EOF'
import collections, datetime, json, sys
ops, last = collections.Counter(), None
try:
    with open(sys.argv[1], "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                d = json.loads(line)
                ops[d["op"]] += 1
                last = d["commit_ts"]
except FileNotFoundError:
    pass
age = "-"
if last:
    t = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
    age = f"{(datetime.datetime.now(datetime.timezone.utc) - t).total_seconds() * 1000:.0f} ms"
print(f"captured {sum(ops.values()):>7} changes  (r={ops['r']} c={ops['c']} u={ops['u']} d={ops['d']})  newest commit age {age:>8}", end="")
EOF
    lag=$(psql -X -At "$FRESHET_SOURCE_URL" -c "SELECT coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), '-') FROM pg_replication_slots WHERE slot_name = 'freshet_atlasco_dev'")
    echo "  slot holds ${lag:--} of WAL"
}
while kill -0 "$load" 2>/dev/null; do
    sleep 2
    show
done
tail -1 "$run/loadgen.log"

if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "freshet exited early; its log:" >&2
    tail -20 "$run/freshet.log" >&2
    exit 1
fi
echo "== stopping freshet (SIGTERM): it drains, syncs and confirms"
kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
show
grep -E "snapshot finished|stopped cleanly" "$run/freshet.log" || true
