"""Real Redis and PostgreSQL for the Dramatiq+Redis+PostgreSQL runs of the tests.

Both servers run as child processes on loopback (plus any extra address a test asks for), on free
non-default ports, with their data in a temp dir, and are stopped by PID. PostgreSQL refuses to run as
root, so as root it runs as the ``postgres`` user (scripts/ci/install-services.sh makes sure it exists).

- ``scale_services``: session fixture, the running :class:`Services` (skips locally, fails in CI, when
  redis-server, postgres or the Python drivers are missing).
- ``fresh_backend_config()``: config overrides for one isolated install: a new database (CREATE DATABASE)
  and a Redis db number of its own, e.g. ``make_env(**fresh_backend_config())``.
- ``require_services()``: skip locally / fail in CI unless own ``Services`` can be started here.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.helpers import free_port, skip_or_fail

#: Redis databases per server: each test install takes the next one.
REDIS_DATABASES = 4096
PG_USER = "alter0"


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    """Why the services cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (scripts/ci/install-services.sh installs it)"
    if pg_bindir() is None:
        return "PostgreSQL is not installed (scripts/ci/install-services.sh installs it)"
    for module in ("dramatiq", "redis", "psycopg2"):
        try:
            __import__(module)
        except ImportError:
            return f"python module {module} is missing (scripts/ci/install-services.sh installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


def require_services() -> None:
    """Skip (locally) or fail (in CI) the calling test unless Redis + PostgreSQL can run here."""
    reason = missing()
    if reason:
        skip_or_fail(f"Dramatiq+Redis+PostgreSQL not available: {reason}")


class Services:
    """One redis-server and one postgres, children of this process."""

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1",), durable: bool = False):
        self.hosts, self.durable = hosts, durable
        self.tmp = Path(tempfile.mkdtemp(prefix="alter0-services-"))
        self.redis_port, self.pg_port = free_port(), free_port()
        self.redis: subprocess.Popen | None = None
        self.pg: subprocess.Popen | None = None
        self._ids = itertools.count(1)
        self._as_postgres = os.geteuid() == 0
        self.pgdata = self.tmp / "pgdata"

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Services":
        self.start_redis()
        self.init_postgres()
        self.start_postgres()
        return self

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", *self.hosts, "--dir", str(self.tmp),
             "--save", "", "--appendonly", "no", "--databases", str(REDIS_DATABASES), "--protected-mode", "no",
             "--logfile", str(self.tmp / "redis.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait(self._redis_ready, "redis-server", self.tmp / "redis.log")

    def _pg_kwargs(self) -> dict:
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if self._as_postgres else {}

    def init_postgres(self) -> None:
        if self._as_postgres:
            shutil.chown(self.tmp, "postgres", "postgres")
        subprocess.run([str(pg_bindir() / "initdb"), "-D", str(self.pgdata), "-U", PG_USER, "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--locale=C"], check=True, capture_output=True, **self._pg_kwargs())
        with open(self.pgdata / "pg_hba.conf", "a") as fh:
            fh.write("host all all 0.0.0.0/0 trust\n")  # reachable only on the addresses listened on

    def start_postgres(self) -> None:
        fast = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                        "-c", "full_page_writes=off"]
        log = open(self.tmp / "postgres.log", "ab")
        self.pg = subprocess.Popen(
            [str(pg_bindir() / "postgres"), "-D", str(self.pgdata), "-p", str(self.pg_port), "-k", str(self.tmp),
             "-h", ",".join(self.hosts), "-c", "max_connections=500", "-c", "shared_buffers=64MB", *fast],
            stdout=log, stderr=subprocess.STDOUT, **self._pg_kwargs())
        log.close()
        self._wait(self._pg_ready, "postgres", self.tmp / "postgres.log")

    def stop_postgres(self) -> None:
        """Fast shutdown by PID (SIGINT): clients are disconnected, as in a database restart."""
        _stop(self.pg, signal.SIGINT)

    def restart_postgres(self, down_sec: float = 0.0) -> None:
        self.stop_postgres()
        time.sleep(down_sec)
        self.start_postgres()

    def stop(self) -> None:
        _stop(self.pg, signal.SIGINT)
        _stop(self.redis, signal.SIGTERM)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _wait(self, ready, name: str, log: Path, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        proc = self.redis if name == "redis-server" else self.pg
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.05)
        text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{name} did not start (exit {proc.poll()}): {text}")

    def _redis_ready(self) -> bool:
        try:
            return self.redis_client().ping()
        except Exception:
            return False

    def _pg_ready(self) -> bool:
        try:
            self.pg_connect().close()
            return True
        except Exception:
            return False

    # --- clients and URLs --------------------------------------------------------------------------
    def redis_client(self, db: int = 0):
        import redis
        return redis.Redis(host=self.hosts[0], port=self.redis_port, db=db, socket_timeout=5)

    def pg_connect(self, dbname: str = "postgres"):
        import psycopg2
        conn = psycopg2.connect(host=self.hosts[0], port=self.pg_port, user=PG_USER, dbname=dbname, connect_timeout=5)
        conn.autocommit = True
        return conn

    def redis_url(self, db: int, host: str | None = None) -> str:
        return f"redis://{host or self.hosts[0]}:{self.redis_port}/{db}"

    def pg_url(self, dbname: str, host: str | None = None) -> str:
        return f"postgresql://{PG_USER}@{host or self.hosts[0]}:{self.pg_port}/{dbname}"

    def fresh(self) -> tuple[str, int]:
        """A new empty database and an emptied Redis db number."""
        n = next(self._ids)
        dbname, redis_db = f"alter0_t{n}", n % REDIS_DATABASES
        conn = self.pg_connect()
        try:
            conn.cursor().execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
        self.redis_client(redis_db).flushdb()
        return dbname, redis_db

    def backend_config(self, host: str | None = None) -> dict:
        """Config overrides for a fresh isolated install on these services."""
        dbname, redis_db = self.fresh()
        return {"runtime": {"queue": {"backend": "dramatiq", "broker_url": self.redis_url(redis_db, host)},
                            "db": {"url": self.pg_url(dbname, host)}}}


def _stop(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_session: Services | None = None


def session_services() -> Services:
    """The session's services, started on first use (skip locally / fail in CI when they cannot run)."""
    global _session
    if _session is None:
        require_services()
        _session = Services().start()
        atexit.register(_session.stop)
    return _session


def fresh_backend_config() -> dict:
    """Config overrides for one isolated Dramatiq+Redis+PostgreSQL install (new database, own Redis db)."""
    return session_services().backend_config()


@pytest.fixture(scope="session")
def scale_services():
    """The session's Redis + PostgreSQL, stopped by PID at the end of the session."""
    global _session
    services = session_services()
    yield services
    services.stop()
    _session = None


# --- helpers shared by the scale tests -------------------------------------------------------------

def submitter(env):
    """A Runtime in the test process on the install's database and queue, to submit many jobs fast."""
    from alter0.config import load_config
    from alter0.runtime import Runtime
    return Runtime(load_config(env.config_path, env={}))


def log_worker_pids(env, fake_agent: Path) -> Path:
    """Run the fake agent through a wrapper that records "<agent pid> <worker pid>" (exec keeps the pid)."""
    wrapper, pids = env.tmp / "agent-wrapper.sh", env.tmp / "agent-ppid.log"
    wrapper.write_text(f'#!/bin/sh\necho "$$ $PPID" >> "{pids}"\nexec "{sys.executable}" "{fake_agent}"\n')
    wrapper.chmod(0o755)
    env.config["executor"]["command"] = [str(wrapper)]
    env.write_config()
    return pids


def runs_by_worker(env) -> dict[int, int]:
    """Agent runs per worker pid (needs log_worker_pids)."""
    parent = dict(line.split() for line in (env.tmp / "agent-ppid.log").read_text().splitlines() if line.strip())
    counts: dict[int, int] = {}
    for run in env.agent_runs():
        worker = int(parent[str(run["pid"])])
        counts[worker] = counts.get(worker, 0) + 1
    return counts


def message_of(run: dict) -> str:
    return run["prompt"].rsplit("New message:\n", 1)[-1].strip()


def assert_task_order(runs: list[dict], key) -> None:
    """Per task (``key(message) -> (task, seq)``): runs start in seq order and never overlap."""
    by_task: dict = {}
    for run in runs:
        if run.get("event") not in ("reply", "transient-failure", "exit", None):
            continue
        message = message_of(run)
        assert message, (f"agent pid {run['pid']} ran with an empty prompt: its worker died before writing it, "
                         "and the agent outlived the worker (the dead-worker guard missed it)")
        task, seq = key(message)
        by_task.setdefault(task, []).append((run["start"], run["end"], seq))
    for task, spans in by_task.items():
        spans.sort()
        seqs = [seq for _, _, seq in spans]
        assert seqs == sorted(seqs), f"task {task} generated out of order: {seqs}"
        for (s1, e1, q1), (s2, e2, q2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"task {task}: messages {q1} and {q2} generated at once ({s1:.3f}-{e1:.3f} vs {s2:.3f})"
