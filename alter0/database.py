"""Open the database (SQLite in WAL mode by default, PostgreSQL by URL) and own its transactions."""

from __future__ import annotations

import os
import re
import threading
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path

from peewee import Database, InterfaceError, OperationalError, SqliteDatabase
from playhouse.db_url import connect, parse
from playhouse.pool import PooledPostgresqlDatabase
from playhouse.shortcuts import ReconnectMixin

from .config import Config
from .models import db
from .ops.migrations import migrate
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


class LockedSqliteDatabase(SqliteDatabase):
    """SQLite whose writers in one process take turns on a lock of their own before meeting SQLite's.

    A writer that finds SQLite's write lock taken sleeps in the busy handler (1, 2, 5, 10 … up to 100 ms
    between tries), so the threads of one worker that write at once stall each other for far longer than a
    commit lasts. Queued on ``write_lock`` instead, a writer starts the moment the commit ahead of it ends.
    Other processes still meet at SQLite's lock (busy_timeout); reads never wait (WAL).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.write_lock = threading.RLock()

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
    """Bind the models to the configured database and bring its schema to the expected version.

    A new database gets the current tables; an older one is backed up to output/backups/ and migrated.
    """
    url = cfg["runtime.db.url"]
    if url:
        database = connect_url(url)
    else:
        path: Path = output_paths(cfg.output_dir)["db"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pragmas = dict(SQLITE_PRAGMAS, synchronous=cfg["runtime.db.synchronous"])
        database = (SqliteDatabase if os.environ.get("EXP_NOLOCK") else LockedSqliteDatabase)(str(path), pragmas=pragmas, check_same_thread=False, timeout=30)
    db.initialize(database)
    with database.connection_context():
        migrate(database, output_paths(cfg.output_dir)["backups"])
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
