#!/usr/bin/env bash
# Install what tests/test_browser.py needs: Debian's chromium (apt) and Playwright for Python (pip, into .venv).
# Playwright drives the system chromium through executable_path: `playwright install` (a browser download) is
# never run. Idempotent: returns at once when both are present.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$REPO/.venv/bin/python"

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
have_playwright() { "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; }

if have_chromium && have_playwright; then
    echo "browser test deps present: $(chromium --version 2>/dev/null || chromium-browser --version), playwright"
    exit 0
fi
if ! have_chromium; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! have_playwright; then
    "$REPO/.venv/bin/pip" install -q "playwright>=1.45"
fi
chromium --version
echo "playwright $("$PY" -c 'import importlib.metadata as m; print(m.version("playwright"))') installed in .venv"
