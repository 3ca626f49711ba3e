"""``alter0 web``: run the HTTP front end under gunicorn (web/gunicorn.conf.py). The core never imports Flask."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..bind import check_bind
from . import codes


def gunicorn_conf() -> Path:
    """web/gunicorn.conf.py, found beside the alter0 package without importing web (which imports Flask)."""
    return Path(__file__).resolve().parents[2] / "web" / "gunicorn.conf.py"


def cmd_web(args) -> int:
    """Check the settings, then exec gunicorn with the project's config file."""
    from ..config import load_config
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
    return codes.RET_OK


def add_commands(sub) -> None:
    w = sub.add_parser("web", help="serve the HTTP API and web console (gunicorn)")
    w.add_argument("--host", help="address to bind (default web.host, 127.0.0.1)")
    w.add_argument("--port", type=int, help="port (default web.port or $PORT, 8080)")
    w.add_argument("--workers", type=int, help="gunicorn worker processes (default web.workers)")
    w.set_defaults(fn=cmd_web)

