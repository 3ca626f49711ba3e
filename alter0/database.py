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

import errno
import sqlite3

from peewee import Database, DatabaseError, IntegrityError, InterfaceError, OperationalError, SqliteDatabase
from playhouse.db_url import connect, parse
from playhouse.pool import PooledPostgresqlDatabase
from playhouse.shortcuts import ReconnectMixin

from .config import Config
from .errors import StorageUnavailable
from .inflight import STAGE_TURN
from .models import db
from .paths import output_paths

#: journal_size_limit: after a checkpoint resets the WAL, it is truncated back to 64 MiB (a burst of big
#: transactions does not leave a WAL of gigabytes behind).
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "cache_size": -16000,
                  "journal_size_limit": 64 << 20}


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
    would). Re-entrant within a thread. The file lock is released at the end of every transaction, so the
    processes of a host take turns as often as the threads of one process do."""

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
        self.sync_setting = str((kwargs.get("pragmas") or {}).get("synchronous", "full")).lower()
        self._relaxed = threading.local()  # (pid, connection) of each thread: see ``relaxed``
        self._turn_conn: tuple[int, sqlite3.Connection] | None = None  # (pid, connection): see ``take_turn``
        self._turn_saved = threading.local()  # the thread's own connection while it has the turn

    def take_turn(self) -> None:
        """Point this thread's statements at the process's turn connection: it took the stage turn
        (``inflight.STAGE_TURN``). One connection for every stage thread of the process, because SQLite drops a
        connection's whole page cache whenever another connection wrote since its last read: with a connection
        per thread (and a second one for relaxed commits) every transaction of a stage started cold and read
        some 130 pages per message back from the files. The turn already makes the threads take turns, and it
        is never given up inside a transaction, so the connection is never used by two threads at once."""
        state = self._state
        if state.transactions:
            raise OperationalError("the stage turn was taken inside a transaction")
        held = self._turn_conn
        if held is None or held[0] != os.getpid():  # a forked child opens its own
            held = self._turn_conn = (os.getpid(), self._connect())
        self._turn_saved.own = (state.conn, state.closed)
        state.conn, state.closed = held[1], False

    def give_turn(self) -> None:
        """Back to this thread's own connection (opened when first used): it gives the stage turn up."""
        state = self._state
        if state.transactions:  # the next thread would write inside this one's transaction
            raise OperationalError("the stage turn was given up inside a transaction")
        state.conn, state.closed = self._turn_saved.own

    def _on_turn_connection(self) -> bool:
        held = self._turn_conn
        return held is not None and held[1] is self._state.conn

    @contextmanager
    def relaxed(self):
        """Run this thread's statements on its second connection, set once to ``synchronous = NORMAL`` (commits
        not flushed by themselves; ``write_tx(durable=False)``), instead of switching the setting of the first
        one before and after every such transaction (two statements each time)."""
        state = self._state
        if state.closed:
            self.connect()
        if self._on_turn_connection():  # one connection for the turn (its page cache): the setting is switched
            state.conn.execute("PRAGMA synchronous = NORMAL")
            try:
                yield
            finally:
                state.conn.execute(f"PRAGMA synchronous = {self.sync_setting.upper()}")
            return
        held = getattr(self._relaxed, "conn", None)
        if held is None or held[0] != os.getpid():  # a forked child opens its own
            conn = self._connect()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -512")  # a claim or a heartbeat touches a few pages: 512 KiB at most
            held = self._relaxed.conn = (os.getpid(), conn)
        main, state.conn = state.conn, held[1]
        try:
            yield
        finally:
            state.conn = main

    def connect(self, reuse_if_open=False):
        """A file that is not a database yet is made one under the write lock: turning it into a WAL database
        writes its header, an upgrade of a read lock to a write lock that SQLite does not wait for, so of two
        processes opening a new file at once (a worker and ``alter0 status``) the second got "database is
        locked" at once. Taken before Peewee's connection lock, in the order ``write_tx`` takes them."""
        if _unformatted(self.database):
            with self.write_lock:
                return super().connect(reuse_if_open)
        return super().connect(reuse_if_open)

    def close(self):
        if self._on_turn_connection():  # the process's turn connection stays open for the next stage: the
            self.give_turn()            # thread's own closes, and the turn's end must not bring it back
            self._turn_saved.own = (None, True)
        held = getattr(self._relaxed, "conn", None)
        if held is not None:
            self._relaxed.conn = None
            if held[0] == os.getpid():
                held[1].close()
        return super().close()

    def execute_sql(self, sql, params=None):
        if self.in_transaction() or not WRITE_SQL.match(sql):  # a write_tx holds the lock already
            return super().execute_sql(sql, params)
        with self.write_lock:
            return super().execute_sql(sql, params)


#: Bytes of SQLite's file header: a shorter file has none yet (a new database).
SQLITE_HEADER_BYTES = 100


def _unformatted(path: str) -> bool:
    """Whether the SQLite file at ``path`` is missing or has no header yet. A ``stat``, never an open: closing any
    descriptor of the file drops every POSIX lock this process holds on it, SQLite's included (its other
    connections would then read and write without their locks)."""
    try:
        return os.stat(path).st_size < SQLITE_HEADER_BYTES
    except FileNotFoundError:
        return True


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


def _take_turn() -> None:
    database = db.obj
    if isinstance(database, LockedSqliteDatabase):
        database.take_turn()
        _turn_db.database = database


def _give_turn() -> None:
    database = getattr(_turn_db, "database", None)
    if database is not None:
        _turn_db.database = None
        database.give_turn()


_turn_db = threading.local()  # the database whose turn connection this thread took
STAGE_TURN.on_switch(_take_turn, _give_turn)


def is_sqlite() -> bool:
    return isinstance(db.obj, SqliteDatabase)


@contextmanager
def write_tx(durable: bool = True):
    """A write transaction; on SQLite it takes the write lock up front (no upgrade deadlocks).

    ``durable=False``: the commit is not flushed to disk by itself (SQLite WAL: ``synchronous = NORMAL`` for this
    commit, no fdatasync; PostgreSQL: ``synchronous_commit = off`` for this transaction). It is as safe as any
    commit against a crash of the process; a power loss may lose it, but only together with every later commit
    of the database that was not flushed either: the next durable commit flushes it too (the WAL is one file,
    written in order). For writes whose loss at a power cut costs nothing (a stage's lease: no worker survives a
    power cut; its attempt count and "started" event)."""
    database = db.obj
    if is_sqlite():
        relax = not durable and getattr(database, "sync_setting", "") == "full" and not database.in_transaction()
        with getattr(database, "write_lock", nullcontext()):
            with database.relaxed() if relax else nullcontext():
                with db.atomic("IMMEDIATE") as tx:
                    yield tx
    else:
        with db.atomic() as tx:
            if not durable and database.transaction_depth() == 1:
                database.execute_sql("SET LOCAL synchronous_commit TO OFF")
            yield tx


#: What a storage failure means for the user: (a piece of the driver's message, or an errno) -> (what, fix).
RESTORE_FIX = "stop alter0 and restore the latest backup: alter0 restore ARCHIVE (alter0 verify shows the damage)"
WRITABLE_FIX = ("give the user running alter0 write access to it (chown), or point runtime.output_dir at a "
                "writable directory")
SPACE_FIX = "free space on that disk (alter0 prune removes old backups), or move runtime.output_dir"
STORAGE_CAUSES: tuple[tuple[str | int, str, str], ...] = (
    ("malformed", "is corrupt", RESTORE_FIX),
    ("not a database", "is corrupt or not a database", RESTORE_FIX),
    ("disk i/o error", "cannot be read or written", RESTORE_FIX),
    ("database or disk is full", "cannot grow: the disk is full", SPACE_FIX),
    ("readonly", "is read-only", WRITABLE_FIX),
    ("unable to open", "cannot be opened", WRITABLE_FIX),
    ("database is locked", "is locked by another process", "retry; if it lasts, find the process holding it "
                                                            "(fuser FILE) and stop it"),
    (errno.ENOSPC, "cannot be written: the disk is full", SPACE_FIX),
    (errno.EDQUOT, "cannot be written: the disk quota is exhausted", SPACE_FIX),
    (errno.EROFS, "is on a read-only file system", WRITABLE_FIX),
    (errno.EACCES, "is not writable (permission denied)", WRITABLE_FIX),
    (errno.EPERM, "is not writable (operation not permitted)", WRITABLE_FIX),
)


def storage_error(exc: BaseException) -> StorageUnavailable | None:
    """The one-line user error of a storage failure (database driver error or OSError), or None when ``exc``
    is not one. A full or read-only disk under the file is named as such, whatever the driver said."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, OSError):
        path = exc.filename or "the output directory"
        known = [(what, fix) for cause, what, fix in STORAGE_CAUSES if cause == exc.errno]
        what, fix = disk_state(path) or (known[0] if known else (f"cannot be used ({exc.strerror})", WRITABLE_FIX))
        return StorageUnavailable(f"{path} {what} -- fix: {fix}")
    if not isinstance(exc, (DatabaseError, InterfaceError, sqlite3.Error)) or \
            isinstance(exc, (IntegrityError, sqlite3.IntegrityError)):
        return None
    detail = str(exc).strip()
    if db.obj is not None and not is_sqlite():
        return StorageUnavailable(f"database server unreachable or refusing ({detail}) -- fix: check "
                                  "runtime.db.url / DATABASE_URL and that the server runs")
    path = str(getattr(db.obj, "database", None) or "(not open)")
    known = [(what, fix) for cause, what, fix in STORAGE_CAUSES
             if isinstance(cause, str) and cause in detail.lower()]
    what, fix = disk_state(path) or (known[0] if known else ("failed", f"alter0 doctor; {RESTORE_FIX}"))
    return StorageUnavailable(f"database {path} {what} ({detail}) -- fix: {fix}")


def disk_state(path: str | os.PathLike) -> tuple[str, str] | None:
    """(what, fix) when the file system holding ``path`` is read-only or full, else None."""
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return "is on a read-only file system", WRITABLE_FIX
    if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
        return f"cannot be written: the disk is full ({stat.f_bavail * stat.f_frsize} bytes free)", SPACE_FIX
    return None


#: Free bytes below which the output directory's disk counts as full (a commit needs room for its WAL pages).
MIN_FREE_BYTES = 1 << 20


def unwritable_reason(cfg: Config) -> str:
    """Why the database cannot take a write now ('' when it can): a cheap check for health probes (no write:
    access rights and the file system of the SQLite file; a read-only PostgreSQL server)."""
    if not is_sqlite():
        read_only = db.execute_sql("SHOW transaction_read_only").fetchone()[0]
        return "the database server is read-only (transaction_read_only = on)" if read_only == "on" else ""
    path = output_paths(cfg.output_dir)["db"]
    for target in (path.parent, path):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is not writable -- fix: {WRITABLE_FIX}"
    state = disk_state(path)
    return f"{path} {state[0]} -- fix: {state[1]}" if state else ""


def sizes(cfg: Config) -> dict[str, int]:
    """Bytes the database uses: the SQLite file and its WAL, or the PostgreSQL database."""
    if not is_sqlite():
        return {"db_bytes": int(db.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]),
                "wal_bytes": 0}
    path = output_paths(cfg.output_dir)["db"]
    wal = path.with_name(path.name + "-wal")
    return {"db_bytes": path.stat().st_size if path.exists() else 0,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0}


def checkpoint() -> None:
    """Copy the WAL into the database without waiting for anyone (SQLite; a no-op on PostgreSQL)."""
    if is_sqlite():
        db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
