#!/usr/bin/env bash
# The schema benchmark at scale: a throwaway PostgreSQL tuned like a small production box,
# `freshet bench schema` (fill through COPY, then queries.sql timed with plans), then stop.
# Scale through the environment: TENANTS (16) × ENTITIES per tenant (125000) × ATTRIBUTES per
# entity (10) = 20M value rows by default; CATALOG (10000) attributes; RUNS (20) per query.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
freshet_release
run=$(freshet_run_dir bench)
trap 'scripts/pg.sh stop "$run/pg" immediate || true; rm -rf "$run"' EXIT
url=$(scripts/pg.sh start "$run/pg" -c shared_buffers=4GB -c max_wal_size=16GB \
    -c checkpoint_timeout=30min -c maintenance_work_mem=1GB -c work_mem=64MB \
    -c effective_cache_size=16GB -c random_page_cost=1.1 -c max_parallel_workers_per_gather=2)
"$freshet" bench schema --url "$url" \
    --tenants "${TENANTS:-16}" --entities "${ENTITIES:-125000}" --attributes "${ATTRIBUTES:-10}" \
    --catalog "${CATALOG:-10000}" --runs "${RUNS:-20}" --jobs 2
