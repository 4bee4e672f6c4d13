#!/usr/bin/env bash
# Capture benchmark: a 1M-row EAV workload, once as one transaction and once as 100k
# ten-row transactions, read from identical copies of one slot by pg_recvlogical (the
# reference: it receives the same pgoutput stream and decodes nothing), by Freshet into a
# null output, and by Freshet into the jsonl output. Prints rows/s, the ratio to pg_recvlogical
# and peak RSS. ROWS (1000000) scales it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
rows=${ROWS:-1000000}

run=$(freshet_run_dir bench-capture)
trap 'scripts/pg.sh stop "$run/pg" immediate || true; rm -rf "$run"' EXIT
url=$(scripts/pg.sh start "$run/pg" -c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=30min)
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$url" -c "$1"; }

# The schema and its publication; the history trigger is off so the workload is the EAV rows.
"$freshet" loadgen fill --url "$url" --tenants 1 --entities 10 --attributes 5 --catalog 10 >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f scripts/bench-workload.sql

# A transaction after the workload: both readers stop at its Begin, past `until`.
end_marker() { sql "SELECT pg_logical_emit_message(true, 'bench.end', '')" >/dev/null; }

measure() { # label slot until rows → one line per reader
    local label=$1 slot=$2 until=$3 n=$4
    sql "SELECT pg_copy_logical_replication_slot('$slot', '${slot}_ref')" >/dev/null
    sql "SELECT pg_copy_logical_replication_slot('$slot', '${slot}_jsonl')" >/dev/null
    local t0 t1 ref_s
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$run/ref.rss" "$PG_BIN/pg_recvlogical" -d "$url" --slot "${slot}_ref" --start \
        --endpos "$until" --no-loop -o proto_version=1 -o publication_names=freshet_atlasco -f /dev/null
    t1=$(date +%s.%N)
    ref_s=$(echo "$t1 - $t0" | bc -l)
    printf '%-22s %-28s %9d rows %8.2fs %10.0f rows/s  ratio 1.00  peak RSS %6.1f MiB\n' "$label" "pg_recvlogical" \
        "$n" "$ref_s" "$(echo "$n / $ref_s" | bc -l)" "$(echo "$(cat "$run/ref.rss") / 1024" | bc -l)"
    for output in null jsonl; do
        local s=$slot extra=()
        if [ "$output" = jsonl ]; then s=${slot}_jsonl; extra=(--jsonl "$run/$slot.jsonl"); fi
        t0=$(date +%s.%N)
        out=$(/usr/bin/time -f "%M" -o "$run/f.rss" "$freshet" bench capture --url "$url" --slot "$s" \
            --publication freshet_atlasco --until "$until" "${extra[@]}" 2>>"$run/freshet.log")
        t1=$(date +%s.%N)
        local secs changes
        secs=$(echo "$t1 - $t0" | bc -l)
        changes=$(echo "$out" | sed -E 's/.*: ([0-9]+) changes.*/\1/')
        [ "$changes" = "$n" ] || { echo "freshet $output read $changes changes, expected $n" >&2; exit 1; }
        printf '%-22s %-28s %9d rows %8.2fs %10.0f rows/s  ratio %.2f  peak RSS %6.1f MiB\n' "$label" "freshet ($output output)" \
            "$changes" "$secs" "$(echo "$changes / $secs" | bc -l)" "$(echo "$ref_s / $secs" | bc -l)" \
            "$(echo "$(cat "$run/f.rss") / 1024" | bc -l)"
    done
}

sql "SELECT pg_create_logical_replication_slot('one_txn', 'pgoutput')" >/dev/null
sql "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, integer_value, float_value)
     SELECT 1, 1000000 + g / 10, g % 10, CASE WHEN g % 3 = 0 THEN 'value ' || g END,
            CASE WHEN g % 3 = 1 THEN g END, CASE WHEN g % 3 = 2 THEN g / 7.0 END
     FROM generate_series(0, $rows - 1) g"
until=$(sql "SELECT pg_current_wal_lsn()")
end_marker
measure "1 txn x $rows" one_txn "$until" "$rows"

sql "SELECT pg_create_logical_replication_slot('small_txns', 'pgoutput')" >/dev/null
sql "CALL bench_small_txns($rows / 10)"
until=$(sql "SELECT pg_current_wal_lsn()")
end_marker
measure "$((rows / 10)) txns x 10" small_txns "$until" "$rows"
