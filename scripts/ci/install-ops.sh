#!/usr/bin/env bash
# Install what the operations tests need beyond the venv: systemd-analyze (to verify the units).
# Idempotent and instant when already present. Needs root (apt-get) when it must install.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze present: $(systemd-analyze --version | head -1)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null
systemd-analyze --version | head -1
