"""Web test helpers: an in-process app on a ThreadQueue, a real gunicorn server, NDJSON parsing, CSRF tokens.

The fixtures built on them (app, client, live_server) are in web_support.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import BIN, ROOT, Alter0Env

from alter0 import stages
from alter0.queue import Queue


class ThreadQueue(Queue):
    """Test double of a worker: runs each enqueued stage in a thread of this process (the real stage code)."""

    name = "threads"

    def __init__(self):
        self.rt = None
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="stage")
        self.sent: list[tuple[str, int]] = []
        self.paused = threading.Event()

    def _send(self, stage: str, job_id: int, delay: float) -> None:
        self.sent.append((stage, job_id))
        if not self.paused.is_set():
            self.pool.submit(self._run, stage, job_id, delay)

    def _run(self, stage: str, job_id: int, delay: float) -> None:
        # Let the enqueuing stage release its lease first: a worker shares one lease owner across its threads.
        time.sleep(max(delay, 0.05))
        stages.run_stage(self.rt, stage, job_id)


def make_app(env: Alter0Env, **overrides):
    """create_app on ``env``'s config with a ThreadQueue (pause it with ``app.queue.paused.set()``)."""
    from alter0.runtime import Runtime
    from web import create_app
    queue = ThreadQueue()
    settings = {"web__sync_timeout_sec": 10, "web__stream_timeout_sec": 10, **overrides}
    rt = Runtime.open(str(env.config_path), queue=queue, **settings)
    queue.rt = rt
    app = create_app({"TESTING": True, "ALTER0_RUNTIME": rt, "SECRET_KEY": "test-secret"})
    app.queue, app.rt = queue, rt
    return app


def csrf_of(client) -> str:
    """The session's CSRF token, read from a console page."""
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """gunicorn serving web:create_app() for an Alter0Env, on a free loopback port."""

    def __init__(self, env: Alter0Env, port: int, proc: subprocess.Popen, log: Path):
        self.env, self.port, self.proc, self.log = env, port, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_gunicorn(env: Alter0Env, *extra: str, port: int | None = None, wait: bool = True) -> LiveServer:
    """Start gunicorn with web/gunicorn.conf.py and the env's config; wait until /health answers."""
    import requests
    port = port or free_port()
    log = env.tmp / f"web-{port}.log"
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", str(ROOT / "web" / "gunicorn.conf.py"),
                             "--bind", f"127.0.0.1:{port}", "--workers", "2", *extra, "web:create_app()"],
                            env=env.env, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    env.procs.append(proc)
    server = LiveServer(env, port, proc, log)
    deadline = time.time() + 60
    while wait:
        assert proc.poll() is None, f"gunicorn exited with {proc.returncode}: {server.logs()}"
        try:
            if requests.get(server.url + "/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or too busy to answer in time
            pass
        assert time.time() < deadline, f"gunicorn did not answer /health: {server.logs()}"
        time.sleep(0.1)
    return server


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
