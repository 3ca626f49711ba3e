#!/usr/bin/env bash
# Take an online backup of the local alter0 install (web and worker may keep running).
# Usage: scripts/backup-local.sh [alter0 backup options...]   e.g. --keep 10 to prune afterwards
# Uses $ALTER0_BIN, else <repo>/.venv/bin/alter0, else alter0 on PATH; honours ALTER0_CONFIG.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ALTER0_BIN:-$REPO/.venv/bin/alter0}"
[ -x "$BIN" ] || BIN="$(command -v alter0)" || { echo "alter0 not found: pip install -e $REPO" >&2; exit 1; }
exec "$BIN" backup "$@"
