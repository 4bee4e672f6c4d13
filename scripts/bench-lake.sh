#!/usr/bin/env bash
# Kafka → lake benchmark, on a throwaway PostgreSQL 15 and a Tansu broker (memory storage):
# a ROWS-row (1000000) EAV workload captured into Kafka by `freshet bench kafka` (the capture
# side's rate, beside pg_recvlogical on the same WAL), then read from the same topics by the
# batcher into a fresh local lake with `freshet bench lake` (records/s, MB/s, the objects it
# wrote, peak RSS). The sink must never be the slower half: the ratio is sink / capture. The
# topics are also read once by a consumer that decodes nothing: the broker's own pace. Last,
# `freshet bench warehouse` loads that lake into an empty PostgreSQL warehouse (a second
# database of the same server): rows/s and seconds per 1M rows, checked against the source.
# PROFILE=1 records the sink with `perf record` and prints its top functions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
rows=${ROWS:-1000000}

run=$(freshet_run_dir bench-lake)
cleanup() {
    scripts/kafka.sh stop "$run/kafka" || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT
url=$(scripts/pg.sh start "$run/pg" -c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=30min)
brokers=$(scripts/kafka.sh start "$run/kafka")
export FRESHET_SOURCE_URL=$url FRESHET_KAFKA_BROKERS=$brokers FRESHET_DATA_DIR=$run
psql -X -q "$url" -c "CREATE DATABASE warehouse"
export FRESHET_WAREHOUSE_URL="${url%/*}/warehouse"
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$url" -c "$1"; }

"$freshet" loadgen fill --url "$url" --tenants 4 --entities 250 --attributes 10 --catalog 100 >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f scripts/bench-workload.sql
# Its own topics, and rotation by size as in production (the age limit never comes first).
sed -e 's/^  topic_prefix: freshet$/  topic_prefix: lakebench/' \
    -e 's/^    max_rows: 100000$/    max_rows: 1000000/' -e 's/^    max_age: 10s$/    max_age: 15m/' \
    pipelines/dev.yaml >"$run/pipeline.yaml"
sql "SELECT pg_create_logical_replication_slot('lake', 'pgoutput')" >/dev/null
sql "SELECT pg_copy_logical_replication_slot('lake', 'lake_ref')" >/dev/null
sql "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, integer_value, float_value)
     SELECT 2, 1000000 + g / 10, 1 + g % 10, CASE WHEN g % 3 = 0 THEN 'value ' || g END,
            CASE WHEN g % 3 = 1 THEN g END, CASE WHEN g % 3 = 2 THEN g / 7.0 END
     FROM generate_series(0, $rows - 1) g"
until=$(sql "SELECT pg_current_wal_lsn()")
sql "SELECT pg_logical_emit_message(true, 'bench.end', '')" >/dev/null

echo "== $rows rows: WAL -> Kafka (capture), then Kafka -> Parquet (sink), same data"
t0=$(date +%s.%N)
"$PG_BIN/pg_recvlogical" -d "$url" --slot lake_ref --start --endpos "$until" --no-loop \
    -o proto_version=1 -o publication_names=freshet_atlasco -f /dev/null
t1=$(date +%s.%N)
ref_s=$(echo "$t1 - $t0" | bc -l)
printf '%-22s %9d rows %8.2fs %10.0f rows/s\n' pg_recvlogical "$rows" "$ref_s" "$(echo "$rows / $ref_s" | bc -l)"

/usr/bin/time -f "%M" -o "$run/capture.rss" "$freshet" bench kafka --pipeline "$run/pipeline.yaml" --slot lake \
    --until "$until" >"$run/capture.out" 2>"$run/capture.log"
capture=$(cat "$run/capture.out")
echo "$capture"
capture_rate=$(echo "$capture" | sed -E 's/.* = ([0-9]+) records\/s.*/\1/')

mkdir -p "$run/lake"
profile=()
[ -z "${PROFILE:-}" ] || profile=(perf record -g -F 499 -o "$run/perf.data" --)
/usr/bin/time -f "%U %S" -o "$run/sink.cpu" "${profile[@]}" "$freshet" bench lake --pipeline "$run/pipeline.yaml" \
    --lake "$run/lake" >"$run/sink.out" 2>"$run/sink.log"
sink=$(cat "$run/sink.out")
echo "$sink"
read -r user sys <"$run/sink.cpu"
printf 'bench lake process CPU, both reads: %.1fs user + %.1fs system\n' "$user" "$sys"
if [ -n "${PROFILE:-}" ]; then
    echo "-- the sink's top functions (self time)"
    { perf report -i "$run/perf.data" --no-children --stdio --sort dso,sym 2>/dev/null | grep -E "^ +[0-9]" | head -30; } || true
fi
sink_rate=$(echo "$sink" | grep -- '-> lake' | sed -E 's/.* = ([0-9]+) records\/s.*/\1/')
raw_rate=$(echo "$sink" | grep 'read only' | sed -E 's/.* = ([0-9]+) records\/s.*/\1/')
printf 'sink / capture: %.2f (above 1: the sink keeps up with capture); sink / broker read only: %.2f\n' \
    "$(echo "$sink_rate / $capture_rate" | bc -l)" "$(echo "$sink_rate / $raw_rate" | bc -l)"
find "$run/lake" -name '*.parquet' -printf '%s %P\n' | sort -n | awk '
    { n++; total += $1; sizes[n] = $1 }
    END { if (n) printf "objects: %d, %.1f MB, median %.2f MB\n", n, total / 1e6, sizes[int((n + 1) / 2)] / 1e6 }'

/usr/bin/time -f "%U %S" -o "$run/load.cpu" "$freshet" bench warehouse --pipeline "$run/pipeline.yaml" \
    --lake "$run/lake" >"$run/load.out" 2>"$run/load.log"
cat "$run/load.out"
read -r user sys <"$run/load.cpu"
printf 'bench warehouse process CPU: %.1fs user + %.1fs system (PostgreSQL does the merge on the same 2 cores)\n' "$user" "$sys"
src=$(sql "SELECT count(*) FROM atlasco.entity_values WHERE entity_id >= 1000000")
wh=$(psql -X -At "$FRESHET_WAREHOUSE_URL" -c "SELECT count(*) FROM analytics.entity_values WHERE entity_id >= 1000000")
echo "entity_values written by the benchmark: source $src rows, warehouse $wh rows"
