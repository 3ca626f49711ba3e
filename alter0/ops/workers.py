"""Which workers are alive, judged from the heartbeats they write into the worker table."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path

#: Seconds without a heartbeat after which a worker counts as gone: several beats (alter0.worker beats
#: every second; its supervisor buries workers silent for 5 s, the same limit).
STALE_AFTER_SEC = 5.0


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


def worker_health(row: dict, now: float | None = None, host: str | None = None) -> str:
    """One of stopped, alive, stale (no recent beat) or dead (its pid is gone on this host)."""
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    if row["state"] == "stopped":
        return "stopped"
    if row["host"] == host and not pid_alive(int(row["pid"])):
        return "dead"
    return "alive" if now - float(row["last_beat"]) <= STALE_AFTER_SEC else "stale"


def read_workers(db_path: Path) -> list[dict]:
    """Worker rows of a SQLite database file, read without the models (works on any database state)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, host, pid, started_at, last_beat, in_flight, state FROM worker").fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()
    return [dict(r) for r in rows]


def worker_status(rows: list[dict], now: float | None = None) -> list[dict]:
    """The rows with ``health`` and ``beat_age_sec`` added, for /api/status and ``alter0 status``."""
    now = time.time() if now is None else now
    return [dict(r, health=worker_health(r, now), beat_age_sec=round(now - float(r["last_beat"]), 1))
            for r in rows]


def live_workers(db_path: Path, now: float | None = None) -> list[dict]:
    """Workers of this database that are running now (a recent beat and, on this host, a live pid)."""
    return [r for r in worker_status(read_workers(db_path), now) if r["health"] == "alive"]
