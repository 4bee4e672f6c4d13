#!/usr/bin/env bash
# Freshness accuracy: `freshet run` (release build) on a PostgreSQL 15, a Tansu broker, a
# local lake and the PostgreSQL warehouse, with LOAD_RATE (200) rows/s written beside, while
# scripts/bench-freshness.py writes PROBES (30) rows one every INTERVAL (2) s and times, from
# outside, when each is really in Kafka, the lake and the warehouse, against when Freshet's
# /v1/freshness first claims each stage holds it. Prints per stage the true commit -> there,
# the claimed commit -> there, how late the claim comes, and claims made too early (0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release

run=$(freshet_run_dir bench-freshness)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    scripts/kafka.sh stop "$run/kafka" || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT

url=$(scripts/pg.sh start "$run/pg")
warehouse="${url%/*}/warehouse"
psql -X -q "$url" -c "CREATE DATABASE warehouse"
psql -X -q "$url" <<'SQL'
CREATE TABLE public.probe (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE public.load (id bigserial PRIMARY KEY, pad text NOT NULL);
CREATE PUBLICATION bench FOR TABLE public.probe, public.load;
SQL
brokers=$(scripts/kafka.sh start "$run/kafka")
port=$(free_port)
cat >"$run/pipeline.yaml" <<YAML
name: bench-freshness
source:
  url: $url
  slot: bench
  publication: bench
  tables: ['public.probe', 'public.load']
  heartbeat_interval: 1s
  status_interval: 200ms
freshness_classes:
  analytics: 30s
tables:
  public.probe: { freshness: analytics }
  public.load: { freshness: analytics }
kafka:
  brokers: '$brokers'
  topic_prefix: bench
batcher:
  store: file://$run/lake
  rotation:
    max_age: 1s
warehouse:
  driver: postgres
  schema: analytics
  postgres:
    url: $warehouse
YAML
"$freshet" run --pipeline "$run/pipeline.yaml" --state-dir "$run" --listen "127.0.0.1:$port" >"$run/freshet.log" 2>&1 &
freshet_pid=$!
pids+=($freshet_pid)
# Ready: both halves run and capture streams (its topics made).
deadline=$((SECONDS + 120))
ready() { python3 -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" 2>/dev/null; }
until ready; do
    if ! kill -0 "$freshet_pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
        echo "freshet did not get ready; its log:" >&2
        tail -20 "$run/freshet.log" >&2
        exit 1
    fi
    sleep 0.2
done
# The background load: LOAD_RATE rows/s in transactions of ten.
python3 - "$url" "${LOAD_RATE:-200}" <<'PY' &
import subprocess, sys, time
url, rate = sys.argv[1], int(sys.argv[2])
p = subprocess.Popen(["psql", "-X", "-q", url], stdin=subprocess.PIPE, text=True)
while True:
    p.stdin.write("INSERT INTO public.load (pad) SELECT md5(g::text) FROM generate_series(1, 10) g;\n")
    p.stdin.flush()
    time.sleep(10 / rate)
PY
pids+=($!)
echo "== freshet run, LOAD_RATE=${LOAD_RATE:-200} rows/s beside, probes into public.probe"
"$FRESHET_VENV/bin/python" scripts/bench-freshness.py "$url" "$warehouse" "$brokers" \
    bench.public.probe "$run/lake/public.probe" "$port"
