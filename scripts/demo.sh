#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL with the AtlasCo schema, a fill, the pipeline check, then a
# steady write load with its live rate, for DEMO_SECONDS (default 20). Ctrl-C stops early.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install.sh
cargo build --locked --quiet
freshet="$CARGO_TARGET_DIR/debug/freshet"

run=$(freshet_run_dir demo)
cleanup() {
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT

FRESHET_SOURCE_URL=$(scripts/pg.sh start "$run/pg")
export FRESHET_SOURCE_URL FRESHET_DATA_DIR="$run"
echo "== PostgreSQL 15 (wal_level=logical) at $FRESHET_SOURCE_URL"

echo "== freshet check --pipeline pipelines/dev.yaml"
"$freshet" check --pipeline pipelines/dev.yaml

echo "== freshet loadgen fill: 4 tenants × 2500 entities × 20 attributes (applies schema/schema.sql)"
"$freshet" loadgen fill --tenants 4 --entities 2500 --attributes 20 --catalog 1000

echo "== freshet loadgen run: 1000 rows/s for ${DEMO_SECONDS:-20}s"
"$freshet" loadgen run --rate 1000 --duration "${DEMO_SECONDS:-20}s"

echo "== what the load left behind"
psql -X "$FRESHET_SOURCE_URL" -c "SELECT op, count(*) AS history_rows FROM atlasco.entity_value_history GROUP BY op ORDER BY op" \
    -c "SELECT slot_name, plugin, confirmed_flush_lsn FROM pg_replication_slots"
