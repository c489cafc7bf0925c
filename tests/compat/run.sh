#!/usr/bin/env bash
# The compatibility suite: unmodified simple-salesforce and salesforce-bulk (Python) and
# salesforce-pubsub-api-client (npm) against `driftless sim --tls`. Creates tests/compat/.venv (pinned requirements), uses the binary at
# ${DRIFTLESS_BIN:-target/debug/driftless} (building it with cargo only when it is missing) and
# exits with pytest's exit code. Extra arguments go to pytest (e.g. `-k bulk2 -x`).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
COMPAT="$ROOT/tests/compat"
VENV="$COMPAT/.venv"
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's python3 ships venv separately.
        rm -rf "$VENV"
        echo "compat: python venv module missing; installing python3-venv" >&2
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO=sudo
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv "$VENV"
    fi
fi
# Reinstall only when requirements.txt changed since the last successful install.
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum "$COMPAT/requirements.txt" | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$COMPAT/requirements.txt"
    echo "$WANT" > "$STAMP"
fi

# The Pub/Sub part drives the npm client pinned in pubsub/package-lock.json; reinstall only when
# the lock file changed since the last successful install.
PUBSUB="$COMPAT/pubsub"
NPM_STAMP="$PUBSUB/node_modules/.lock.sha256"
NPM_WANT=$(sha256sum "$PUBSUB/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$NPM_STAMP" ] || [ "$(cat "$NPM_STAMP")" != "$NPM_WANT" ]; then
    (cd "$PUBSUB" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$NPM_WANT" > "$NPM_STAMP"
fi

BIN=${DRIFTLESS_BIN:-target/debug/driftless}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
if [ ! -x "$BIN" ]; then
    if [ "$BIN" != "$ROOT/target/debug/driftless" ]; then
        echo "compat: DRIFTLESS_BIN=$BIN does not exist" >&2
        exit 2
    fi
    echo "compat: $BIN missing; running cargo build -p driftless" >&2
    cargo build -p driftless
fi
export DRIFTLESS_BIN="$BIN"

set +e
"$VENV/bin/python" -m pytest -q -c "$COMPAT/pytest.ini" --rootdir "$COMPAT" "$COMPAT" "$@"
rc=$?
set -e
exit $rc
