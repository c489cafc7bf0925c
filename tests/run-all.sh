#!/usr/bin/env bash
# Every test of the project: formatting, lints, the Rust suites (unit and end-to-end, against the
# real simulator and the local Postgres), and the Python compatibility suite that drives the
# simulator with unmodified Salesforce clients.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# cargo-nextest runs each test in its own process, retries a failure twice and reports it as FLAKY
# (see .config/nextest.toml); doctests are not in nextest's reach, so cargo runs those.
cargo nextest run --workspace --no-tests=warn
cargo test --workspace --doc
bash tests/compat/run.sh
