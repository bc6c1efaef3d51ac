#!/usr/bin/env bash
# The project's test command (README): formatting, lints, then every test against real Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-postgres.sh
bash scripts/ensure-synapse.sh   # the Matrix backend's tests run against a real Synapse
bash scripts/ensure-chromium.sh  # the console's browser tests drive a real headless Chromium
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=4
