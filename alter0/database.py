"""Open the database (SQLite in WAL mode by default, PostgreSQL by URL) and own its transactions."""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path

from peewee import Database, InterfaceError, OperationalError, SqliteDatabase
from playhouse.db_url import connect, parse
from playhouse.pool import PooledPostgresqlDatabase
from playhouse.shortcuts import ReconnectMixin

from .config import Config
from .models import db
from .paths import output_paths

SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "cache_size": -16000}


#: Pool settings for PostgreSQL; the URL's query string overrides them (?max_connections=64).
POSTGRES_POOL = {"max_connections": 32, "stale_timeout": 300, "timeout": 10}


class PostgresPool(ReconnectMixin, PooledPostgresqlDatabase):
    """PostgreSQL for worker threads and gunicorn workers: one pooled connection per thread, a reconnect
    when the server went away (outside a transaction), and no connection shared across a fork."""

    reconnect_errors = ((OperationalError, "server closed the connection"),
                        (OperationalError, "terminating connection"),
                        (OperationalError, "connection already closed"),
                        (InterfaceError, "connection already closed"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        forget = weakref.WeakMethod(self._forget_connections)
        os.register_at_fork(after_in_child=lambda: forget() and forget()())

    def _forget_connections(self) -> None:
        self._state.reset()  # the parent's sockets stay the parent's: drop them unclosed
        self._pool_lock = threading.RLock()
        self._pool_available = threading.Condition(self._pool_lock)
        self._connections, self._in_use = [], {}


#: Statements that write: outside a transaction each one takes the write lock and commits.
WRITE_SQL = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
#: Longest sleep, in seconds, between two tries at a write lock another process holds.
WRITE_LOCK_POLL_MAX_SEC = 0.002


class WriteLock:
    """One writer at a time among this host's alter0 processes and their threads: a thread lock, then an
    flock(2) on a file beside the database (polled every 0.5-2 ms, given up after ``timeout`` seconds as SQLite
    would). Re-entrant within a thread."""

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout, self.local = path, timeout, threading.RLock()
        self.fd, self.pid, self.depth = None, None, 0

    def __enter__(self) -> "WriteLock":
        self.local.acquire()
        if self.depth == 0:
            try:
                self._lock_file()
            except BaseException:
                self.local.release()
                raise
        self.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self.depth -= 1
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.local.release()

    def _lock_file(self) -> None:
        if self.fd is None or self.pid != os.getpid():  # a forked child takes the lock with its own file
            self.fd, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), os.getpid()
        deadline, delay = time.monotonic() + self.timeout, 0.0005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OperationalError("database is locked (another alter0 process holds the write lock)")
                time.sleep(delay)
                delay = min(delay * 2, WRITE_LOCK_POLL_MAX_SEC)


class LockedSqliteDatabase(SqliteDatabase):
    """SQLite whose writers take turns on a lock of their own (``WriteLock``) before meeting SQLite's.

    A writer that finds SQLite's write lock taken sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms between
    tries), so the worker's threads and the web's requests that write at once stall each other for far longer
    than a commit lasts (POST /api/jobs p99 of a second under load). Queued on the write lock instead, a writer
    starts within a few ms of the commit ahead of it. Reads never wait (WAL).
    """

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.write_lock = WriteLock(Path(f"{database}-writelock"), kwargs.get("timeout", 30))

    def execute_sql(self, sql, params=None):
        if self.in_transaction() or not WRITE_SQL.match(sql):  # a write_tx holds the lock already
            return super().execute_sql(sql, params)
        with self.write_lock:
            return super().execute_sql(sql, params)


def connect_url(url: str) -> Database:
    """The database a URL names; postgres(ql):// gets the reconnecting pool."""
    scheme = url.split(":", 1)[0]
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        return PostgresPool(**{**POSTGRES_POOL, **parse(url)})
    return connect(url)


def open_database(cfg: Config) -> Database:
    """Bind the models to the configured database (the schema is brought up to date by
    ``migrations.open_current``, the start-up path)."""
    url = cfg["runtime.db.url"]
    if url:
        database = connect_url(url)
    else:
        path: Path = output_paths(cfg.output_dir)["db"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pragmas = dict(SQLITE_PRAGMAS, synchronous=cfg["runtime.db.synchronous"])
        database = LockedSqliteDatabase(str(path), pragmas=pragmas, check_same_thread=False, timeout=30)
    db.initialize(database)
    return database


def is_sqlite() -> bool:
    return isinstance(db.obj, SqliteDatabase)


@contextmanager
def write_tx():
    """A write transaction; on SQLite it takes the write lock up front (no upgrade deadlocks)."""
    if is_sqlite():
        with getattr(db.obj, "write_lock", nullcontext()), db.atomic("IMMEDIATE") as tx:
            yield tx
    else:
        with db.atomic() as tx:
            yield tx
