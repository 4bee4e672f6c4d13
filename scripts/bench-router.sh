#!/usr/bin/env bash
# The read router under load: `freshet router` (release build) for one table of the analytics
# class, beside a PostgreSQL 15 primary and a streaming replica made with `pg_basebackup -R`,
# both probed every 200 ms. wrk (Debian's) sends GET /v1/route for DURATION (30s) over
# CONNECTIONS (64) connections and THREADS (1) threads on the same 2 cores, and prints
# decisions/s and latency percentiles; then the router's peak RSS. Every answer comes from
# memory (the last probe round), never from a database.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release

run=$(freshet_run_dir bench-router)
pid=
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    scripts/pg.sh stop "$run/replica" immediate || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT

url=$(scripts/pg.sh start "$run/pg")
psql -X -q "$url" -c "CREATE TABLE public.t (id int PRIMARY KEY)"
replica=$(scripts/pg.sh replica "$run/replica" "$run/pg")
port=$(free_port)
cat >"$run/router.yaml" <<YAML
name: bench-router
source:
  url: $url
  tables: ['public.t']
tables:
  public.t: { freshness: analytics }
router:
  poll_interval: 200ms
  replicas:
    - name: replica-1
      url: $replica
YAML
"$freshet" router --pipeline "$run/router.yaml" --listen "127.0.0.1:$port" >"$run/router.log" 2>&1 &
pid=$!
route="http://127.0.0.1:$port/v1/route?table=public.t&class=analytics"
python3 - "$route" <<'PY'
import json, sys, time, urllib.request
deadline = time.time() + 30
while True:
    try:
        d = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
        if d["target"] == "replica" or time.time() > deadline:
            break
    except OSError:
        if time.time() > deadline:
            raise
    time.sleep(0.2)
print(f"one decision: {d['target']} ({d['reason']}: {d['detail']})")
PY
echo "== wrk -t${THREADS:-1} -c${CONNECTIONS:-64} -d${DURATION:-30s} --latency $route"
wrk -t"${THREADS:-1}" -c"${CONNECTIONS:-64}" -d"${DURATION:-30s}" --latency "$route"
echo "router peak RSS: $(awk '/VmHWM/ { print $2, $3 }' "/proc/$pid/status")"
