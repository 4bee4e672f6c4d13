#!/usr/bin/env bash
# WAL → Kafka benchmark, on a throwaway PostgreSQL 15 and a Tansu broker (memory storage):
#
#  1. throughput: a 1M-row EAV workload (as one transaction, and as 100k ten-row ones) read
#     from identical copies of one slot by pg_recvlogical (the reference: same pgoutput
#     stream, decodes nothing) and by Freshet through the transform and the producer until
#     Kafka acknowledged every record. Rows/s, the ratio, peak RSS.
#  2. latency: `freshet run` while `freshet loadgen run` writes RATE (10000) rows/s for
#     SECONDS (60): commit → delivery latency p50/p99/max, as the kafka stage measures it.
#  3. a stalled broker: the same under a lighter load (STALL_RATE, 3000 rows/s) with the
#     broker frozen (SIGSTOP) for STALL (60) s: Freshet's RSS sampled every second, and the
#     time to catch up after SIGCONT.
# ROWS (1000000) scales part 1. PROFILE=1 records part 1's Freshet runs with `perf record -a`
# (the whole machine, so Freshet's CPU, the broker's and the walsender's are told apart) and
# prints the CPU by process and Freshet's top functions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
rows=${ROWS:-1000000}
rate=${RATE:-10000}
seconds=${SECONDS_LOAD:-60}
stall_rate=${STALL_RATE:-3000}
stall=${STALL:-60}

run=$(freshet_run_dir bench-kafka)
cleanup() {
    [ -n "${fpid:-}" ] && kill -9 "$fpid" 2>/dev/null || true
    [ -f "$run/kafka/pid" ] && kill -CONT "$(cat "$run/kafka/pid")" 2>/dev/null || true
    scripts/kafka.sh stop "$run/kafka" || true
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT
url=$(scripts/pg.sh start "$run/pg" -c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=30min)
brokers=$(scripts/kafka.sh start "$run/kafka")
export FRESHET_SOURCE_URL=$url FRESHET_KAFKA_BROKERS=$brokers
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$url" -c "$1"; }
pipeline=pipelines/dev.yaml

# The schema, a small catalog, and the history trigger off so the workload is the EAV rows.
"$freshet" loadgen fill --url "$url" --tenants 4 --entities 250 --attributes 10 --catalog 100 >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f scripts/bench-workload.sql
end_marker() { sql "SELECT pg_logical_emit_message(true, 'bench.end', '')" >/dev/null; }

parts=${PARTS:-1 2 3}
if [[ " $parts " == *" 1 "* ]]; then
echo "== 1. WAL -> Kafka throughput ($rows rows)"
# Its own topics: the dev pipeline's later runs start from empty ones.
sed 's/^  topic_prefix: freshet$/  topic_prefix: throughput/' "$pipeline" >"$run/throughput.yaml"
measure() { # label slot until rows
    local label=$1 slot=$2 until=$3 n=$4 t0 t1 ref_s secs out records
    sql "SELECT pg_copy_logical_replication_slot('$slot', '${slot}_ref')" >/dev/null
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$run/ref.rss" "$PG_BIN/pg_recvlogical" -d "$url" --slot "${slot}_ref" --start \
        --endpos "$until" --no-loop -o proto_version=1 -o publication_names=freshet_atlasco -f /dev/null
    t1=$(date +%s.%N)
    ref_s=$(echo "$t1 - $t0" | bc -l)
    printf '%-20s %-20s %9d rows %8.2fs %10.0f rows/s  ratio 1.00  peak RSS %6.1f MiB\n' "$label" pg_recvlogical \
        "$n" "$ref_s" "$(echo "$n / $ref_s" | bc -l)" "$(echo "$(cat "$run/ref.rss") / 1024" | bc -l)"
    [ -z "${PROFILE:-}" ] || { perf record -a -g -F 499 -o "$run/perf.data" >/dev/null 2>&1 & perf_pid=$!; sleep 1; }
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$run/f.rss" "$freshet" bench kafka --pipeline "$run/throughput.yaml" --slot "$slot" \
        --until "$until" >"$run/f.out" 2>>"$run/bench.log" &
    local timer=$! pid
    pid=$(pgrep -P "$timer" -x freshet || echo "$timer")
    wait "$timer"
    t1=$(date +%s.%N)
    out=$(cat "$run/f.out")
    if [ -n "${PROFILE:-}" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        report() { perf report -i "$run/perf.data" --no-children --stdio "$@" 2>/dev/null | grep -E '^ +[0-9]' || true; }
        share() { report --percentage absolute --sort pid "$@" | awk '{ s += $1 } END { printf "%.1f%%", s }'; }
        echo "-- $label: CPU samples by process (perf -a; the rest is idle and other processes)"
        echo "   freshet $(share --pid "$pid"), broker $(share --pid "$(cat "$run/kafka/pid")"), postgres (walsender) $(share --comms postgres)"
        echo "-- Freshet's top functions (self time, % of its samples)"
        report --percentage relative --pid "$pid" --sort dso,sym | head -20
    fi
    secs=$(echo "$t1 - $t0" | bc -l)
    records=$(echo "$out" | sed -E 's/.*: ([0-9]+) records.*/\1/')
    [ "$records" -ge "$n" ] || { echo "freshet delivered $records records, expected $n; log: $run/bench.log" >&2; tail -5 "$run/bench.log" >&2; exit 1; }
    printf '%-20s %-20s %9d rows %8.2fs %10.0f rows/s  ratio %.2f  peak RSS %6.1f MiB\n' "$label" "freshet -> kafka" \
        "$n" "$secs" "$(echo "$n / $secs" | bc -l)" "$(echo "$ref_s / $secs" | bc -l)" \
        "$(echo "$(cat "$run/f.rss") / 1024" | bc -l)"
}
sql "SELECT pg_create_logical_replication_slot('one_txn', 'pgoutput')" >/dev/null
sql "INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, integer_value, float_value)
     SELECT 2, 1000000 + g / 10, 1 + g % 10, CASE WHEN g % 3 = 0 THEN 'value ' || g END,
            CASE WHEN g % 3 = 1 THEN g END, CASE WHEN g % 3 = 2 THEN g / 7.0 END
     FROM generate_series(0, $rows - 1) g"
until=$(sql "SELECT pg_current_wal_lsn()")
end_marker
measure "1 txn x $rows" one_txn "$until" "$rows"
sql "SELECT pg_drop_replication_slot('one_txn')" >/dev/null
sql "SELECT pg_create_logical_replication_slot('small_txns', 'pgoutput')" >/dev/null
sql "CALL bench_small_txns($rows / 10)"
until=$(sql "SELECT pg_current_wal_lsn()")
end_marker
measure "$((rows / 10)) txns x 10" small_txns "$until" "$rows"
sql "SELECT pg_drop_replication_slot('small_txns')" >/dev/null
# The next parts snapshot the tables first: leave them the fill's size.
sql "TRUNCATE atlasco.entity_values"
fi

# `freshet run` on the dev pipeline in the background; its peak RSS goes to $1.rss.
start_freshet() {
    /usr/bin/time -f "%M %U %S" -o "$run/$1.rss" "$freshet" run --pipeline "$pipeline" --state-dir "$run" \
        >"$run/$1.log" 2>&1 &
    fpid=$!
    for _ in $(seq 300); do
        sql "SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'freshet_atlasco_dev' AND r.state IN ('catchup', 'streaming')" | grep -q 1 && return 0
        sleep 0.2
    done
    echo "freshet did not start streaming; log:" >&2; tail -20 "$run/$1.log" >&2; exit 1
}
# The freshet child of /usr/bin/time.
freshet_pid() { pgrep -P "$fpid" -x freshet || echo "$fpid"; }
caught_up() { # waits until the slot confirmed the current WAL position; prints seconds waited
    local target t0
    target=$(sql "SELECT pg_current_wal_lsn()")
    t0=$(date +%s.%N)
    until [ "$(sql "SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = 'freshet_atlasco_dev'")" = t ]; do
        sleep 0.1
    done
    echo "$(date +%s.%N) - $t0" | bc -l
}
stop_freshet() {
    kill -TERM "$(freshet_pid)"
    wait "$fpid" || true
    fpid=
}

if [[ " $parts " == *" 2 "* ]]; then
echo "== 2. commit -> delivery latency at $rate rows/s for ${seconds}s"
start_freshet latency
"$freshet" loadgen run --url "$url" --rate "$rate" --duration "${seconds}s" --connections 8 >"$run/load.out" 2>"$run/load.log"
tail -1 "$run/load.out"
caught_up >/dev/null
stop_freshet
grep "commit to delivery latency since start" "$run/latency.log" | tail -1 | tr ' ' '\n' | grep = | python3 -c '
import sys
v = dict(l.strip().split("=", 1) for l in sys.stdin)
k = lambda *names: tuple(v[n] for n in names)
print("commit -> delivery, whole run: %s txns, p50 %s ms, p99 %s ms, max %s ms" % k("transactions", "p50_ms", "p99_ms", "max_ms"))
print("after the first 5 s window:   %s txns, p50 %s ms, p99 %s ms, max %s ms" % k("steady_transactions", "steady_p50_ms", "steady_p99_ms", "steady_max_ms"))
print("  of which commit -> the transaction reached the producer: p50 %s ms, p99 %s ms" % k("steady_arrival_p50_ms", "steady_arrival_p99_ms"))'
awk '{ printf "freshet CPU: %.1f s user + %.1f s system over the run\n", $2, $3 }' "$run/latency.rss"
grep "commit to delivery latency transactions" "$run/latency.log" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) printf "p99 per 5 s window: min %.1f ms, median %.1f ms, max %.1f ms over %d windows\n", v[1], v[int((NR + 1) / 2)], v[NR], NR }'
printf 'peak RSS of freshet run: %.1f MiB\n' "$(echo "$(cut -d' ' -f1 "$run/latency.rss") / 1024" | bc -l)"
fi

[[ " $parts " == *" 3 "* ]] || exit 0
echo "== 3. broker frozen (SIGSTOP) for ${stall}s under $stall_rate rows/s"
start_freshet stall
"$freshet" loadgen run --url "$url" --rate "$stall_rate" --duration "$((stall + 40))s" --connections 4 >"$run/stall-load.out" 2>"$run/stall-load.log" &
load=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$(freshet_pid)/status"; }
: >"$run/rss.txt"
for _ in $(seq 15); do echo "before $(rss)" >>"$run/rss.txt"; sleep 1; done
kill -STOP "$(cat "$run/kafka/pid")"
for _ in $(seq "$stall"); do echo "stalled $(rss)" >>"$run/rss.txt"; sleep 1; done
kill -CONT "$(cat "$run/kafka/pid")"
wait "$load"
tail -1 "$run/stall-load.out"
recovery=$(caught_up)
echo "after $(rss)" >>"$run/rss.txt"
stop_freshet
awk '{ kib[$1] = $2; if ($2 > max[$1]) max[$1] = $2; if (!($1 in first)) first[$1] = $2; n[$1]++
       if ($1 == "stalled" && n[$1] == 20) at20 = $2 }
     END { printf "RSS MiB: before the stall max %.1f; frozen: first %.1f, at 20 s %.1f, max %.1f, last %.1f; after catching up %.1f\n",
           max["before"]/1024, first["stalled"]/1024, at20/1024, max["stalled"]/1024, kib["stalled"]/1024, kib["after"]/1024 }' "$run/rss.txt"
printf 'caught up %.1f s after the load ended (the broker resumed %ss before it)\n' "$recovery" 40
grep -c "waiting for the broker" "$run/stall.log" | sed 's/^/stall reports in the log: /'
if grep -q "restarting from the slot" "$run/stall.log"; then echo "note: the pipeline restarted in-process during the stall"; fi
printf 'peak RSS of freshet run: %.1f MiB\n' "$(echo "$(cut -d' ' -f1 "$run/stall.rss") / 1024" | bc -l)"
