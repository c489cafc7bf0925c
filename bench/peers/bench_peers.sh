#!/usr/bin/env bash
# bench_peers: the same simulated org (N Accounts, default 100000) loaded into Postgres by Driftless
# end to end, extracted by Airbyte's source-salesforce, and extracted by Singer's tap-salesforce
# piped into target-postgres; prints records, rows/s and Driftless's ratio to each.
# Not part of the test suite. Installs each peer, unmodified and pinned, into its own venv under
# bench/peers/.venvs. Uses ${DRIFTLESS_BIN:-target/release/driftless} (built when missing) and the
# Postgres at 127.0.0.1:5432. Usage: bash bench/peers/bench_peers.sh [ACCOUNTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HERE="$ROOT/bench/peers"
VENVS="$HERE/.venvs"
PY=${PYTHON:-python3}
mkdir -p "$VENVS"

install() { # venv-name pip-spec...
    local venv="$VENVS/$1"; shift
    local want; want=$(echo "$@" | sha256sum | cut -d' ' -f1)
    if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$want" ]; then
        rm -rf "$venv"
        "$PY" -m venv "$venv"
        echo "bench_peers: installing $* into $venv" >&2
        "$venv/bin/pip" install -q --disable-pip-version-check "$@"
        echo "$want" > "$venv/.installed"
    fi
}
install airbyte airbyte-source-salesforce==2.10.3
install singer tap-salesforce==2.8.1
install target pipelinewise-target-postgres==2.1.2
install harness psycopg2-binary==2.9.10

BIN=${DRIFTLESS_BIN:-target/release/driftless}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
if [ ! -x "$BIN" ]; then
    echo "bench_peers: building $BIN" >&2
    cargo build --release -p driftless
fi
exec "$VENVS/harness/bin/python" "$HERE/bench_peers.py" --bin "$BIN" --venvs "$VENVS" --accounts "${1:-100000}"
