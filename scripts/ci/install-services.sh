#!/usr/bin/env bash
# Install what the scale-out tests need: Debian's redis-server and postgresql, and the Python drivers
# (dramatiq[redis], redis, psycopg2-binary) into <repo>/.venv.
#
# Usage: scripts/ci/install-services.sh
# Idempotent and fast when everything is present. Installs only: no service is started here (the tests
# start their own redis-server and postgres on loopback, on non-default ports, with data in a temp dir,
# and stop them by PID). Needs root (or sudo) for apt-get when a package is missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$REPO/.venv/bin/python"
PIP_SPECS=("dramatiq[redis]>=2,<3" "redis>=5" "psycopg2-binary>=2.9")

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
have_postgres || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "installing ${missing[*]} (Debian packages)"
    $sudo apt-get update -qq
    # policy-rc.d (where present) keeps apt from starting the default services; the tests start their own.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# postgres refuses to run as root: the tests run it as this user when they are root.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if ! "$PY" -c "import dramatiq, redis, psycopg2" 2>/dev/null; then
    echo "installing ${PIP_SPECS[*]} into .venv"
    "$REPO/.venv/bin/pip" install -q "${PIP_SPECS[@]}"
fi

pg_version="$("$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -1)" --version | awk '{print $3}')"
py_versions="$("$PY" -c 'import dramatiq, redis, psycopg2
print("dramatiq", dramatiq.__version__, "redis-py", redis.__version__, "psycopg2", psycopg2.__version__.split()[0])')"
echo "services ready: $(redis-server --version | cut -d' ' -f1-3), postgres $pg_version, $py_versions"
