#!/usr/bin/env bash
# Commit → visible in the warehouse, end to end, with every component on this machine:
# PostgreSQL 15 (the source, and the warehouse as a second database of the same server), a
# Tansu broker (memory storage), and `freshet run` (both halves, release build) on
# pipelines/dev.yaml, while `freshet loadgen run` writes RATE rows/s (each of RATES in turn,
# default "1000 2000 4000") for SECONDS (60). Beside the load, `freshet bench visible` writes a
# probe row every 250 ms into a captured table of the analytics class (30 s budget) and
# watches for it in the warehouse: p50/p90/p99/max from commit to visible, and how many never
# arrived. Then: whether the loader kept up (the warehouse's entity_values equal to the
# source's within 30 s of the load's end) and the capture and loader rates over the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release
seconds=${SECONDS_PER_RATE:-60}

run=$(freshet_run_dir bench-warehouse)
pid=
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    scripts/kafka.sh stop "$run/kafka" || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 ~ "^"m"(\\{|$)" { s += $2 } END { printf "%d", s }'; }

for rate in ${RATES:-1000 2000 4000}; do
    scripts/kafka.sh stop "$run/kafka" >/dev/null 2>&1 || true
    scripts/pg.sh stop "$run/pg" immediate >/dev/null 2>&1 || true
    rm -rf "${run:?}"/*
    url=$(scripts/pg.sh start "$run/pg" -c shared_buffers=1GB -c max_wal_size=4GB)
    brokers=$(scripts/kafka.sh start "$run/kafka")
    psql -X -q "$url" -c "CREATE DATABASE warehouse"
    export FRESHET_SOURCE_URL=$url FRESHET_KAFKA_BROKERS=$brokers FRESHET_DATA_DIR=$run
    export FRESHET_WAREHOUSE_URL="${url%/*}/warehouse"
    "$freshet" loadgen fill --url "$url" --tenants 4 --entities 1000 --attributes 10 --catalog 1000 >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 "$url" -c "CREATE TABLE public.freshet_probe (id bigint PRIMARY KEY, at timestamptz NOT NULL);
        ALTER PUBLICATION freshet_atlasco ADD TABLE public.freshet_probe"
    sed -e 's/^    - atlasco.entity_values$/    - atlasco.entity_values\n    - public.freshet_probe/' \
        -e 's/^  atlasco.entity_values: { freshness: analytics }$/  atlasco.entity_values: { freshness: analytics }\n  public.freshet_probe: { freshness: analytics }/' \
        pipelines/dev.yaml >"$run/pipeline.yaml"
    port=$(free_port)
    "$freshet" run --pipeline "$run/pipeline.yaml" --state-dir "$run" --listen "127.0.0.1:$port" >"$run/freshet.log" 2>&1 &
    pid=$!
    # The snapshot of the fill loaded first: the run measures the stream.
    for _ in $(seq 1 120); do
        n=$(psql -X -At "$FRESHET_WAREHOUSE_URL" -c "SELECT count(*) FROM analytics.entity_values" 2>/dev/null || echo 0)
        [ "$n" = "$(psql -X -At "$url" -c 'SELECT count(*) FROM atlasco.entity_values')" ] && break
        sleep 1
    done
    delivered0=$(metric freshet_kafka_records_delivered_total); copied0=$(metric freshet_loader_rows_copied_total)
    echo "== $rate rows/s for ${seconds}s (loadgen; every component on this machine's 2 cores)"
    "$freshet" loadgen run --url "$url" --rate "$rate" --duration "${seconds}s" >"$run/loadgen.log" 2>&1 &
    load=$!
    "$freshet" bench visible --pipeline "$run/pipeline.yaml" --probe public.freshet_probe --duration "${seconds}s"
    wait "$load"
    tail -1 "$run/loadgen.log"
    delivered=$(( $(metric freshet_kafka_records_delivered_total) - delivered0 ))
    copied=$(( $(metric freshet_loader_rows_copied_total) - copied0 ))
    start=$(date +%s)
    caught=no
    for _ in $(seq 1 30); do
        src=$(psql -X -At "$url" -c "SELECT count(*) FROM atlasco.entity_values")
        wh=$(psql -X -At "$FRESHET_WAREHOUSE_URL" -c "SELECT count(*) FROM analytics.entity_values")
        if [ "$src" = "$wh" ]; then caught="yes, $(( $(date +%s) - start )) s after the load ended"; break; fi
        sleep 1
    done
    echo "records delivered to Kafka $delivered, rows copied into the warehouse $copied over the run; the warehouse caught up: $caught"
    kill -TERM "$pid"; wait "$pid" || true; pid=
done
