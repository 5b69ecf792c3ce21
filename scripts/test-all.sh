#!/usr/bin/env bash
# Every test, against the real engines (PostgreSQL, Cassandra, Redis, Neo4j, OpenSearch). Starts what the tests
# need (engines/up: installs and caches them on first use; Debian's chromium and
# chromium-driver for the dashboard's browser test), runs format, lint and unused-dependency
# checks, the whole cargo test suite, then the Python suites (the client's and the dashboard's
# in headless Chromium) against a real `playpulse serve`, and stops the engines it started. A
# second run on the same machine reuses ~/.m2, ~/.cargo and target/ (the Python venv too).
set -euo pipefail
cd "$(dirname "$0")/.."

export ENGINES_DIR="${ENGINES_DIR:-$PWD/.engines}"
engines=(postgres cassandra redis neo4j opensearch)

# Stop only what this run started: a developer's running stack stays up.
started=()
stop_started() {
    if ((${#started[@]})); then
        engines/down "${started[@]}" || true
    fi
}
trap stop_started EXIT
for engine in "${engines[@]}"; do
    if ! engines/status "$engine" >/dev/null 2>&1; then
        started+=("$engine")
    fi
done
engines/up "${engines[@]}"

# The dashboard's browser test drives Debian's Chromium through its WebDriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

export PLAYPULSE_TEST_CASSANDRA="127.0.0.1:${CASSANDRA_PORT:-9042}"
export PLAYPULSE_TEST_REDIS="redis://127.0.0.1:${REDIS_PORT:-6379}"
export PLAYPULSE_TEST_POSTGRES="postgres://postgres@127.0.0.1:${PG_PORT:-5432}/playpulse"
export PLAYPULSE_TEST_NEO4J="127.0.0.1:${NEO4J_BOLT_PORT:-7687}"
export PLAYPULSE_TEST_OPENSEARCH="http://127.0.0.1:${OPENSEARCH_PORT:-9200}"
# The tests log little unless asked.
export RUST_LOG="${RUST_LOG:-warn}"

cargo fmt --all -- --check
# Unused dependencies fail the run; cargo-machete is installed on first use.
if ! cargo machete --version >/dev/null 2>&1; then
    cargo install cargo-machete --version 0.9.2 --locked
fi
cargo machete
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
scripts/python-tests.sh
