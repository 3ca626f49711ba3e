"""Web test helpers: the Flask app on a stub-engine runtime, a real gunicorn server, NDJSON and CSRF tokens.

The fixtures built on them (app, client, make_web_app, live_server) are in tests/conftest.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .helpers import BIN, ROOT, free_port, wait_until
from .install import Alter0Env


def make_app(rt):
    """create_app around the Runtime ``rt`` (its queue a StubQueue); ``app.rt`` and ``app.queue`` are kept."""
    from web import create_app
    app = create_app({"TESTING": True, "ALTER0_RUNTIME": rt, "SECRET_KEY": "test-secret"})
    app.queue, app.rt = rt.queue, rt
    return app


def csrf_of(client) -> str:
    """The session's CSRF token, read from a console page."""
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class LiveServer:
    """gunicorn serving web:create_app() for an Alter0Env, on a free loopback port."""

    def __init__(self, env: Alter0Env, port: int, proc: subprocess.Popen, log: Path):
        self.env, self.port, self.proc, self.log = env, port, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def answers(url: str, proc: subprocess.Popen, logs) -> bool:
    """Whether ``url`` answers 200 now; an AssertionError with ``logs()`` if ``proc`` has exited."""
    import requests
    assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}: {logs()}"
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or too busy to answer in time
        return False


def start_gunicorn(env: Alter0Env, *extra: str, port: int | None = None, wait: bool = True) -> LiveServer:
    """Start gunicorn with web/gunicorn.conf.py and the env's config; wait until /health answers."""
    port = port or free_port()
    log = env.tmp / f"web-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", str(ROOT / "web" / "gunicorn.conf.py"),
                                 "--bind", f"127.0.0.1:{port}", "--workers", "2", *extra, "web:create_app()"],
                                env=env.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    env.procs.append(proc)
    server = LiveServer(env, port, proc, log)
    if wait:
        wait_until(lambda: answers(server.url + "/health", proc, server.logs), 60,
                   lambda: f"gunicorn to answer /health: {server.logs()}",
                   interval=0.1)
    return server
