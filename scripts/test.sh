#!/usr/bin/env bash
# The whole test suite on real services: installs what it needs, starts a PostgreSQL 15
# cluster for the run, runs every test, stops the cluster. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install.sh
# The fuzz targets build from a fresh clone (AddressSanitizer, without Kafka): scripts/fuzz.sh.
scripts/fuzz.sh build

run=$(freshet_run_dir test)
cleanup() {
    scripts/pg.sh stop "$run/pg" immediate || true
    rm -rf "$run"
}
trap cleanup EXIT
FRESHET_TEST_PG_URL=$(scripts/pg.sh start "$run/pg")
export FRESHET_TEST_PG_URL
cargo test --locked "$@"
