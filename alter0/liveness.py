"""The one rule for "is this worker alive": a heartbeat within runtime.queue.worker_stale_sec and, on this host,
a live pid. The supervisor, the status page, the CLI, metrics and backup all ask here."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path

from .clock import db_now
from .config import Config
from .models import Worker

HOST = socket.gethostname()
#: Heartbeat period of a worker's supervisor, in seconds.
BEAT_SEC = 1.0
WORKER_COLUMNS = ("id", "host", "pid", "started_at", "last_beat", "in_flight", "state")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def stale_after(cfg: Config) -> float:
    """Seconds without a heartbeat after which a worker counts as gone."""
    return float(cfg["runtime.queue.worker_stale_sec"])


def health(row: dict, limit: float, at: float | None = None) -> str:
    """One of stopped, alive, stale (no recent beat) or dead (its pid is gone on this host)."""
    at = db_now() if at is None else at
    if row["state"] == "stopped":
        return "stopped"
    if row["host"] == HOST and not pid_alive(int(row["pid"])):
        return "dead"
    return "alive" if at - float(row["last_beat"]) <= limit else "stale"


def with_health(rows: list[dict], limit: float, at: float | None = None) -> list[dict]:
    """The rows with ``health``, ``alive`` and ``beat_age_sec`` added (for /api/status, the CLI, the console)."""
    at = db_now() if at is None else at
    return [dict(r, health=(h := health(r, limit, at)), alive=h == "alive",
                 beat_age_sec=round(at - float(r["last_beat"]), 1)) for r in rows]


def worker_rows(include_stopped_since: float | None = None) -> list[dict]:
    """Worker rows of the open database: those not stopped, plus stopped ones that beat after the given time."""
    cond = Worker.state != "stopped"
    if include_stopped_since is not None:
        cond = cond | (Worker.last_beat > include_stopped_since)
    return list(Worker.select(*[getattr(Worker, c) for c in WORKER_COLUMNS]).where(cond).dicts())


def live_workers(cfg: Config) -> list[dict]:
    """Workers of the open database that are running now."""
    return [r for r in with_health(worker_rows(), stale_after(cfg)) if r["alive"]]


def live_workers_in_file(db_path: Path, limit: float) -> list[dict]:
    """Live workers of a SQLite database file, read without the models (any database state; for backup)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(f"SELECT {', '.join(WORKER_COLUMNS)} FROM worker").fetchall()]
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()
    return [r for r in with_health(rows, limit, at=time.time()) if r["alive"]]  # a SQLite file: this host's clock
