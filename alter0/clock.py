"""The clock of leases, heartbeats and dispatch marks: the database server's on PostgreSQL, so workers on
hosts whose clocks disagree still agree on who holds a lease and who is alive; this host's on SQLite (one
host). Every time compared across processes for those decisions is read here (``db_now``); other stored
times (created_at, finished_at) stay the writer's own clock."""

from __future__ import annotations

import threading
import time

from .database import is_sqlite
from .models import db, now

#: Seconds between two readings of the server's clock (the offset is kept in between).
OFFSET_TTL_SEC = 10.0


class _Offset:
    """Server clock minus this host's clock, as last measured."""

    def __init__(self):
        self.value = 0.0
        self.measured_at = float("-inf")
        self.lock = threading.Lock()


_offset = _Offset()


def db_now() -> float:
    """Seconds since the epoch by the database's clock (PostgreSQL: the server's, re-measured every
    OFFSET_TTL_SEC; SQLite: this host's)."""
    if db.obj is None or is_sqlite():  # no database opened yet (file-level tools) or SQLite: this host's clock
        return now()
    with _offset.lock:
        if time.monotonic() - _offset.measured_at >= OFFSET_TTL_SEC:
            before = now()
            server = float(db.execute_sql("SELECT extract(epoch from clock_timestamp())").fetchone()[0])
            _offset.value = server - (before + now()) / 2
            _offset.measured_at = time.monotonic()
        return now() + _offset.value
