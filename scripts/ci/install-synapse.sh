#!/usr/bin/env bash
# Install the Matrix homeserver the Matrix channel tests run against: matrix-synapse from PyPI in its OWN venv
# (its dependencies never mix with alter0's), at ${ALTER0_CACHE:-~/.cache/alter0}/synapse-venv.
#
# Usage: scripts/ci/install-synapse.sh
# Idempotent: exits at once when the pinned version is installed. Needs python3.11+ and PyPI (wheels exist for
# every dependency on CPython 3.11, no compiler needed). Installs only: tests/support/synapse.py writes a config
# (loopback port, SQLite, registration shared secret, no federation) and starts and stops the server itself.
set -euo pipefail

SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
VENV="${ALTER0_CACHE:-$HOME/.cache/alter0}/synapse-venv"
PYTHON="${SYNAPSE_PYTHON:-python3}"

installed() { (cd / && "$VENV/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null) || true; }

if [ "$(installed)" = "$SYNAPSE_VERSION" ]; then
    echo "synapse $SYNAPSE_VERSION already installed in $VENV"
    exit 0
fi
start=$(date +%s)
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
echo "synapse $(installed) installed in $VENV in $(( $(date +%s) - start )) s"
