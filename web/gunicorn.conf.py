"""gunicorn settings of the alter0 web front end (``gunicorn -c web/gunicorn.conf.py 'web:create_app()'``).

gthread workers: each open request (a sync wait of POST /api/message, a stream) holds one thread, while the
worker's main thread keeps its heartbeat, so ``timeout`` never cuts a long stream. The bind defaults to
web.host:web.port (127.0.0.1:$PORT or 8080); a --bind on the command line wins. Listening beyond loopback
without security.api_token is refused at start.
"""

import sys
from pathlib import Path

from alter0.bind import check_bind
from alter0.config import load_config
from alter0.errors import ConfigError

_cfg = load_config()

wsgi_app = "web:create_app()"
bind = [f"{_cfg['web.host']}:{_cfg['web.port']}"]
worker_class = "gthread"
workers = _cfg["web.workers"]
threads = _cfg["web.threads"]
timeout = 60  # worker heartbeat, not request length (gthread)
keepalive = 5
graceful_timeout = int(_cfg["runtime.shutdown.drain_timeout_sec"] + 0.999)
# runtime.log.console_level: info prints the access log on the terminal; warning (scripts/run) writes it to
# output/logs/web-access.log and prints only gunicorn's warnings and errors.
_quiet = _cfg["runtime.log.console_level"] in ("warning", "error")
if _quiet:
    (Path(_cfg.output_dir) / "logs").mkdir(parents=True, exist_ok=True)
accesslog = str(Path(_cfg.output_dir) / "logs" / "web-access.log") if _quiet else "-"
errorlog = "-"
loglevel = _cfg["runtime.log.console_level"]
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
proc_name = "alter0-web"


def on_starting(server):
    """Refuse a non-loopback bind without an API token, with the reason, before any socket is opened."""
    try:
        check_bind([str(b) for b in server.cfg.bind], _cfg["security.api_token"])
    except ConfigError as exc:
        print(f"alter0 web: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(2)


def when_ready(server):
    for b in server.cfg.bind:
        server.log.info("alter0 console at http://%s/", b)


# gunicorn >= 25 opens a control socket at one fixed path per user; several alter0 installs (or test servers)
# on one machine would fight over it, and alter0 does not use it. (Older gunicorn ignores the setting.)
control_socket_disable = True
