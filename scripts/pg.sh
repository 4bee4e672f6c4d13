#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters on 127.0.0.1, on a free port, wal_level=logical.
#
#   scripts/pg.sh start DIR [-c name=value ...]   initdb DIR if empty, start, print the URL
#   scripts/pg.sh replica DIR PRIMARY_DIR [-c ...] a streaming replica of the running cluster in
#                                                  PRIMARY_DIR (pg_basebackup -R), started
#   scripts/pg.sh stop DIR [fast|immediate]        stop the cluster in DIR (no error if down)
#   scripts/pg.sh url DIR                          print the URL of a running cluster
#
# As root, the server runs as the postgres user (initdb refuses root), so DIR's parents must
# be traversable by it: keep DIR under /tmp or another world-searchable directory.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: pg.sh start|stop|url DIR}
dir=${2:?usage: pg.sh start|stop|url DIR}
shift 2

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() {
    echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

case "$cmd" in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
            || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    if [ -f "$dir/port" ] && as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        url
        exit 0
    fi
    for attempt in 1 2 3; do
        port=$(free_port)
        echo "$port" >"$dir/port"
        if as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o \
            "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
             -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32 \
             -c max_connections=200 -c hot_standby=on -c log_min_messages=warning $*" >/dev/null; then
            url
            exit 0
        fi
        echo "pg.sh: start on port $port failed (attempt $attempt), see $dir/server.log" >&2
    done
    tail -20 "$dir/server.log" >&2
    exit 1
    ;;
replica)
    primary=${1:?usage: pg.sh replica DIR PRIMARY_DIR}
    shift
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
        chmod 700 "$dir"
        as_owner "$PG_BIN/pg_basebackup" -D "$dir" -R -X stream -c fast \
            -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres >"$dir.basebackup.log" 2>&1 \
            || { cat "$dir.basebackup.log" >&2; exit 1; }
    fi
    exec "$0" start "$dir" "$@"
    ;;
stop)
    mode=${1:-fast}
    if [ -f "$dir/postmaster.pid" ]; then
        as_owner "$PG_BIN/pg_ctl" -D "$dir" -m "$mode" -w stop >/dev/null 2>&1 || true
    fi
    ;;
url)
    url
    ;;
*)
    echo "usage: pg.sh start|stop|url DIR" >&2
    exit 2
    ;;
esac
