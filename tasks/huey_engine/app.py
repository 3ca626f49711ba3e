"""The Huey binding of one Config: SqliteHuey on <output>/queue/huey.db, the three stage tasks, supervisor hooks."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from huey import SqliteHuey
from huey.storage import SqliteStorage

from alter0 import stages
from alter0.config import Config
from alter0.database import storage_error
from alter0.inflight import STAGE_TURN
from alter0.paths import ensure_dirs
from alter0.runtime import get_runtime
from alter0.supervisor import Supervisor

#: Exit status of a consumer whose supervisor could not start.
SUPERVISOR_FAILED = 1
#: Huey priority of each stage task (higher runs first): route and close are short.
PRIORITY = {"route": 10, "generate": 0, "close": 10}


def huey_options(cfg: Config) -> dict:
    """The SqliteHuey keyword arguments for this config (WAL, no result store: the Job table is the truth)."""
    path = ensure_dirs(cfg.output_dir)["queue"]
    return {"filename": str(path), "results": False, "utc": True, "journal_mode": "wal",
            "timeout": cfg["runtime.queue.enqueue_timeout_sec"], "fsync": cfg["runtime.db.synchronous"] == "full"}


#: Take the next message: the highest priority, then the oldest (Huey's own order), deleted and returned.
TAKE_SQL = ("delete from task where id = (select id from task where queue = ? order by priority desc, id limit 1) "
            "returning data")
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35)


class QueueStorage(SqliteStorage):
    """Huey's SQLite storage, except that no commit of the queue file is flushed to disk by itself.

    ``huey.db`` only carries "run stage X of job N"; the job row is the truth, and its own flushed commit records
    the send (``Job.dispatched_at``) before the message is queued. A message a power cut loses is sent again by
    the workers' dispatch sweep (``supervisor.redispatch``: an active job nobody runs whose message is not in
    the store) within ``runtime.queue.dispatch_deadline_sec`` of the restart; a take a power cut loses gives the
    message back, and its duplicate is a no-op (``stages.run_stage``: only a job still in that stage, under no
    live lease, runs). A crash of a process loses neither: the WAL is in the OS's page cache."""

    _relaxed: sqlite3.Connection | None = None

    def _relaxed_conn(self) -> sqlite3.Connection:
        """The connection enqueues and takes use (under ``self.lock``): the store's own settings, except
        ``synchronous = NORMAL`` when the store flushes every commit (Huey's own connection keeps its settings
        for everything else; one connection per setting: no PRAGMA per statement)."""
        if self._relaxed is None:
            conn = self._create_connection()
            if self._fsync is True:
                conn.execute("pragma synchronous = 1")
            self._relaxed = conn
        return self._relaxed

    def close(self):
        with self.lock:
            if self._relaxed is not None:
                self._relaxed.close()
                self._relaxed = None
        return super().close()

    def waiting_rows(self, limit: int) -> list[tuple[int, bytes]]:
        """(row id, message bytes) of the waiting messages, at most ``limit``."""
        return self.sql("select id, data from task where queue = ? limit ?", (self.name, limit), results=True)

    @contextmanager
    def _relaxed_write(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction on the relaxed connection (the caller holds ``self.lock``), as Huey's own
        ``db(commit=True)``: committed at the end of the block, rolled back if it raises."""
        conn = self._relaxed_conn()
        cursor = conn.cursor()
        try:
            cursor.execute(self.begin_sql)
            yield cursor
        except Exception:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cursor.close()

    def enqueue(self, data, priority=None):
        # one statement in autocommit mode: its own write transaction, no BEGIN and COMMIT around it
        with self.lock:
            self._relaxed_conn().execute("insert into task (queue, data, priority) values (?, ?, ?)",
                                         (self.name, self.to_blob(data), priority or 0))

    def dequeue(self):
        # in the process's stage turn (taken before the store's lock, as a stage that enqueues does): a take
        # does not hand the GIL back and forth with a running stage
        with STAGE_TURN.held(), self.lock:
            conn = self._relaxed_conn()
            if conn.execute("select 1 from task where queue = ? limit 1", (self.name,)).fetchone() is None:
                return None  # the common answer of an idle poll: no write at all
            if HAS_RETURNING:
                # one statement: a write statement holds the write lock from its start, so the row it picks is
                # the row it deletes (fetchall steps it to its end: the autocommit commits there)
                rows = conn.execute(TAKE_SQL, (self.name,)).fetchall()
                return rows[0][0] if rows else None
            with self._relaxed_write() as cursor:  # SQLite before 3.35: a read and a delete in one transaction
                cursor.execute("select id, data from task where queue = ? order by priority desc, id limit 1",
                               (self.name,))
                row = cursor.fetchone()
                taken = row is not None and cursor.execute("delete from task where id = ?",
                                                           (row[0],)).rowcount == 1
            return row[1] if taken else None


class QueueHuey(SqliteHuey):
    """SqliteHuey without revocation: alter0 never revokes a Huey message (a job is cancelled by its own row,
    ``Job.cancel_requested``) and stores no results, so nothing is ever written to the key-value table, and the
    two reads of it Huey makes around each message it runs (is it revoked? clear its revoke key) are skipped."""

    storage_class = QueueStorage

    def is_revoked(self, task, timestamp=None, peek=True):
        return False

    def delete(self, key):
        return None


def _has_tables(path) -> bool:
    """Whether the queue file has Huey's tables already (then opening it takes no write lock: a locked queue
    store does not stop a process from starting)."""
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return {"task", "schedule", "kv"} <= names


def _stage_task(huey: SqliteHuey, stage: str):
    def run(job_id):
        stages.run_stage(get_runtime(), stage, job_id)
    run.__name__ = stage
    return huey.task(priority=PRIORITY[stage], name=f"alter0.{stage}")(run)


class HueyBinding:
    """One SqliteHuey with the stage tasks registered and the worker's supervisor started/stopped by its hooks."""

    def __init__(self, cfg: Config):
        options = huey_options(cfg)
        self.huey = QueueHuey("alter0", **options, create_tables=not _has_tables(Path(options["filename"])))
        self.tasks = {stage: _stage_task(self.huey, stage) for stage in PRIORITY}
        self.supervisor: Supervisor | None = None
        self._lock = threading.Lock()
        self.huey.on_startup(name="start_supervisor")(self._start_hook)
        self.huey.on_shutdown(name="stop_supervisor")(self.stop_supervisor)

    def start_supervisor(self) -> None:
        """Once per consumer process: heartbeats, cancels, reclaim, maintenance. ``alter0 worker`` calls it
        before its threads start; a failure (raised) stops the worker: it never runs without a supervisor."""
        with self._lock:
            if self.supervisor is None:
                supervisor = Supervisor(get_runtime())
                supervisor.start()
                self.supervisor = supervisor

    def _start_hook(self) -> None:
        """Huey's start hook (``huey_consumer tasks.huey``): Huey only logs a failing hook, so a supervisor that
        cannot start ends the process here, non-zero, with one line."""
        try:
            self.start_supervisor()
        except Exception as exc:
            known = storage_error(exc)
            print(f"alter0 worker: the supervisor could not start: {known.message if known else exc!r}; "
                  "stopping (a worker never runs without one)", file=sys.stderr, flush=True)
            os._exit(SUPERVISOR_FAILED)

    def stop_supervisor(self) -> None:
        with self._lock:
            if self.supervisor is not None and not self.supervisor.stop_event.is_set():
                self.supervisor.stop(get_runtime().cfg["runtime.shutdown.drain_timeout_sec"])


_bindings: dict[str, HueyBinding] = {}
_bindings_lock = threading.Lock()


def binding_for(cfg: Config) -> HueyBinding:
    """The process's binding for this config's queue file (built once per file)."""
    key = str(ensure_dirs(cfg.output_dir)["queue"])
    with _bindings_lock:
        if key not in _bindings:
            _bindings[key] = HueyBinding(cfg)
        return _bindings[key]
