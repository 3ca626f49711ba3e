"""``alter0 web``: run the HTTP front end under gunicorn (web/gunicorn.conf.py). The core never imports Flask."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
from pathlib import Path

from . import cli
from .errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, a name or a unix socket) is reachable only from this machine."""
    host = host.strip("[]")
    if host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(binds: list[str], token: str) -> None:
    """Refuse to listen beyond loopback without an API token."""
    for bind in binds:
        host = bind if bind.startswith("unix:") else bind.rsplit(":", 1)[0] if ":" in bind else bind
        if not token and not is_loopback(host or "0.0.0.0"):
            raise ConfigError(f"refusing to serve on {bind} without an API token: anyone who can reach that address "
                              "could run commands. Set security.api_token (or ALTER0_API_TOKEN), or bind 127.0.0.1.")


def gunicorn_conf() -> Path:
    """web/gunicorn.conf.py, found without importing the web package (which imports Flask)."""
    spec = importlib.util.find_spec("web")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the web package is not installed (pip install -e . from the alter0 checkout)")
    return Path(list(spec.submodule_search_locations)[0]) / "gunicorn.conf.py"


def cmd_web(args) -> int:
    """Check the settings, then exec gunicorn with the project's config file."""
    from .config import load_config
    if args.config:
        os.environ["ALTER0_CONFIG"] = os.path.abspath(args.config)
    if args.host:
        os.environ["ALTER0_WEB__HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    cfg = load_config()
    check_bind([f"{cfg['web.host']}:{cfg['web.port']}"], cfg["security.api_token"])
    argv = [sys.executable, "-m", "gunicorn", "-c", str(gunicorn_conf())]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    print(f"alter0 web: console at http://{cfg['web.host']}:{cfg['web.port']}/", file=sys.stderr, flush=True)
    os.execv(sys.executable, argv + ["web:create_app()"])
    return cli.RET_OK


def add_parser(sub) -> None:
    w = sub.add_parser("web", help="serve the HTTP API and web console (gunicorn)")
    w.add_argument("--host", help="address to bind (default web.host, 127.0.0.1)")
    w.add_argument("--port", type=int, help="port (default web.port or $PORT, 8080)")
    w.add_argument("--workers", type=int, help="gunicorn worker processes (default web.workers)")
    w.set_defaults(fn=cmd_web)


cli.EXTRA_COMMANDS.append(add_parser)
