#!/usr/bin/env bash
# A throwaway Tansu broker (Kafka protocol) on 127.0.0.1, on a free port.
#
#   scripts/kafka.sh start DIR [memory|sqlite]   start (memory by default), print host:port
#   scripts/kafka.sh stop DIR                    stop it (no error if down)
#
# memory:// is fast and forgets everything on restart; sqlite:// (libsql, DIR/tansu.db)
# survives kill -9 but is slow: keep its volumes small.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cmd=${1:?usage: kafka.sh start|stop DIR [memory|sqlite]}
dir=${2:?usage: kafka.sh start|stop DIR [memory|sqlite]}
engine=${3:-memory}
TANSU=${FRESHET_TANSU:-$FRESHET_CACHE/tansu/bin/tansu}

case "$cmd" in
start)
    mkdir -p "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "127.0.0.1:$(cat "$dir/port")"
        exit 0
    fi
    port=$(free_port)
    case "$engine" in
    memory) storage=memory://tansu/ ;;
    sqlite) storage=sqlite://tansu.db ;;
    *) echo "kafka.sh: engine is memory or sqlite" >&2; exit 2 ;;
    esac
    (cd "$dir" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage" \
        >broker.log 2>&1) &
    echo $! >"$dir/pid"
    echo "$port" >"$dir/port"
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port"
            exit 0
        fi
        sleep 0.1
    done
    echo "kafka.sh: tansu did not listen on $port; its log:" >&2
    tail -20 "$dir/broker.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
    ;;
*)
    echo "usage: kafka.sh start|stop DIR [memory|sqlite]" >&2
    exit 2
    ;;
esac
