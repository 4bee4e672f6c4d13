# Sourced by the other scripts: where caches and build output live (outside the repository,
# so a fresh clone reuses them) and how cargo is invoked.
export FRESHET_CACHE=${FRESHET_CACHE:-$HOME/.cache/freshet}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FRESHET_CACHE/target}
export FRESHET_TANSU=${FRESHET_TANSU:-$FRESHET_CACHE/tansu/bin/tansu}
export FRESHET_CARGO_FUZZ=${FRESHET_CARGO_FUZZ:-$FRESHET_CACHE/cargo-fuzz/bin/cargo-fuzz}
# The consumers' side of the tests: Python with the official Confluent client and fastavro.
export FRESHET_VENV=${FRESHET_VENV:-$FRESHET_CACHE/venv}
# Schemathesis, which tests the HTTP API against its OpenAPI document: a venv of its own, so
# its pins never meet the consumers'.
export FRESHET_SCHEMATHESIS=${FRESHET_SCHEMATHESIS:-$FRESHET_CACHE/schemathesis/bin/schemathesis}
# The infrastructure checks: checkov and hadolint in a venv of their own; Terraform's CLI config
# (written by install.sh) points `terraform init` at the provider mirror on the machine.
export FRESHET_IAC_VENV=${FRESHET_IAC_VENV:-$FRESHET_CACHE/iac}
export FRESHET_TF_CLI_CONFIG=${FRESHET_TF_CLI_CONFIG:-$FRESHET_CACHE/terraform.rc}
# The fuzz build (sanitizer flags) keeps its own output, so it never invalidates the main one.
export FRESHET_FUZZ_TARGET=${FRESHET_FUZZ_TARGET:-$FRESHET_CACHE/fuzz-target}
mkdir -p "$FRESHET_CACHE"
# The benchmarks' start: what they need installed, and the release binary built, in $freshet.
freshet_release() {
    scripts/install.sh
    cargo build --locked --release --quiet
    freshet="$CARGO_TARGET_DIR/release/freshet"
}
# A TCP port free on 127.0.0.1 now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# A directory the postgres user can traverse, for throwaway clusters.
freshet_run_dir() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/freshet-$1.XXXXXX")
    chmod 755 "$dir"
    echo "$dir"
}
