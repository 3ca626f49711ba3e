#!/usr/bin/env bash
# Restore a backup archive into the local alter0 install. Stop the worker first; the files replaced
# are kept in output/backups/replaced-<UTC timestamp>/.
# Usage: scripts/restore-local.sh ARCHIVE [alter0 restore options...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ALTER0_BIN:-$REPO/.venv/bin/alter0}"
[ -x "$BIN" ] || BIN="$(command -v alter0)" || { echo "alter0 not found: pip install -e $REPO" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: $0 ARCHIVE [options]" >&2; exit 2; }
exec "$BIN" restore "$@"
