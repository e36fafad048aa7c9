#!/usr/bin/env bash
# Make .venv with surveyqa and its pinned dependencies (constraints.txt), idempotently.
# With --test also the system pieces the tests use: Debian's Chromium for browser tests and
# the local PostgreSQL server for registry and tracking tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}

if [ "${1:-}" = "--test" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        echo "setup: installing Debian chromium for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        echo "setup: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
    fi
    EXTRAS="[test]"
else
    EXTRAS=""
fi

stamp=".venv/.surveyqa-installed$EXTRAS"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ constraints.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing surveyqa$EXTRAS and its pinned dependencies (about 2 minutes the first time)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".$EXTRAS"
    touch "$stamp"
fi
