"""Fresh alter0 installs for the bench: a config file, an output dir, the worker, gunicorn, the raw consumer.

Every process start is timed to readiness: the worker to its first heartbeat row, gunicorn to /health 200.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it waited for (an executor run), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Install:
    """One alter0 install in ``root``: config.json, output/, and the processes started for it."""

    def __init__(self, root: Path, **config):
        self.root = root
        self.output = root / "output"
        self.config_path = root / "config.json"
        self.port = free_port()
        base = {"runtime": {"output_dir": str(self.output)},
                "executor": {"name": "command", "command": ["cat"]},
                "web": {"port": self.port}}
        for key, value in config.items():
            base[key] = {**base.get(key, {}), **value}
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(base, indent=2))
        self.env = dict(os.environ, ALTER0_CONFIG=str(self.config_path), PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join([str(ROOT), str(BENCH)]))
        for key in ("ALTER0_OUTPUT_DIR", "DATABASE_URL", "PORT"):
            self.env.pop(key, None)
        self.procs: list[subprocess.Popen] = []
        self.worker: subprocess.Popen | None = None

    @property
    def db_path(self) -> Path:
        return self.output / "db" / "alter0.db"

    def spawn(self, argv: list[str], name: str, **env) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env={**self.env, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(self, timeout: float = 60) -> float:
        """Start `alter0 worker`; seconds from the spawn to its first heartbeat row in the database."""
        started = time.monotonic()
        proc = self.worker = self.spawn([str(BIN / "alter0"), "worker"], "worker")
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}: {self.log('worker')}")
            if self._heartbeat(proc.pid):
                return time.monotonic() - started
            time.sleep(0.005)
        raise RuntimeError(f"worker not ready after {timeout}s: {self.log('worker')}")

    def stop_worker(self) -> None:
        """Stop the worker as systemd would (SIGTERM: it drains) and wait for it."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            self.worker.wait(timeout=60)
        self.worker = None

    def _heartbeat(self, pid: int) -> bool:
        if not self.db_path.exists():
            return False
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1) as conn:
                return conn.execute("SELECT 1 FROM worker WHERE pid = ? AND state = 'running'", (pid,)).fetchone() \
                    is not None
        except sqlite3.Error:
            return False

    def start_web(self, timeout: float = 60) -> float:
        """Start gunicorn with web/gunicorn.conf.py; seconds from the spawn to GET /health 200."""
        started = time.monotonic()
        proc = self.spawn([str(BIN / "gunicorn"), "-c", str(ROOT / "web" / "gunicorn.conf.py")], "web")
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {proc.returncode}: {self.log('web')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"gunicorn not ready after {timeout}s: {self.log('web')}")

    def start_raw_consumer(self, raw_dir: Path) -> subprocess.Popen:
        """The baseline's consumer process (pipeline_lib.rawchain) on this install's settings."""
        # imported by name (not run as __main__) so its tasks register under the names the bench enqueues
        return self.spawn([sys.executable, "-c", "from pipeline_lib import rawchain; rawchain.main()"], "raw-consumer",
                          PIPELINE_RAW_DIR=str(raw_dir))

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM every process (its group), then SIGKILL what is left after 30 s."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
