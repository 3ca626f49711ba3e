#!/usr/bin/env bash
# Install pinned versions of the real agent CLIs (codex, claude) into <repo>/.agents, for tests.
#
# Usage: scripts/ci/install-agents.sh [PREFIX]     (default PREFIX: <repo>/.agents)
# Binaries land in PREFIX/node_modules/.bin; tests/test_real_agents.py looks there (or in
# $ALTER0_AGENTS_BIN). Idempotent: exits at once when the pinned versions are already installed.
# Needs node + npm and the npm registry; no login, no model traffic (tests use a local model stub).
set -euo pipefail

CODEX_VERSION="${CODEX_VERSION:-0.169.0}"
CLAUDE_VERSION="${CLAUDE_VERSION:-2.1.197}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX="${1:-$REPO/.agents}"

installed_version() {  # installed_version <package> -> prints the version or nothing
    local pkg_json="$PREFIX/node_modules/$1/package.json"
    [ -f "$pkg_json" ] && node -p "require('$pkg_json').version" 2>/dev/null || true
}

if [ "$(installed_version @openai/codex)" = "$CODEX_VERSION" ] &&
   [ "$(installed_version @anthropic-ai/claude-code)" = "$CLAUDE_VERSION" ] &&
   [ -x "$PREFIX/node_modules/.bin/codex" ] && [ -x "$PREFIX/node_modules/.bin/claude" ]; then
    echo "agents already installed in $PREFIX (codex $CODEX_VERSION, claude $CLAUDE_VERSION)"
    exit 0
fi

command -v npm >/dev/null || { echo "npm not found: install Node.js >= 18" >&2; exit 1; }
mkdir -p "$PREFIX"
[ -f "$PREFIX/package.json" ] || echo '{"private": true}' > "$PREFIX/package.json"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$CODEX_VERSION" "@anthropic-ai/claude-code@$CLAUDE_VERSION"

"$PREFIX/node_modules/.bin/codex" --version
"$PREFIX/node_modules/.bin/claude" --version
echo "agents installed in $PREFIX/node_modules/.bin"
