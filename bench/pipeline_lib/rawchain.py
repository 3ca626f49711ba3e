"""The baseline: per item a chain of three Huey tasks (A enqueues B enqueues C) with no-op bodies; C writes
the item's done row. Same SqliteHuey settings and consumer settings as alter0's binding, read from
tasks/huey_engine/app.py and consumer.py themselves so the baseline cannot drift from them.

    PIPELINE_RAW_DIR=<dir> ALTER0_CONFIG=<config> python -c "from pipeline_lib import rawchain; rawchain.main()"
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from huey import SqliteHuey

from alter0.config import load_config

RAW_DIR = Path(os.environ.get("PIPELINE_RAW_DIR", "/tmp/pipeline-raw"))
DONE_DDL = "CREATE TABLE IF NOT EXISTS done (item INTEGER PRIMARY KEY, enqueued_at REAL, done_at REAL)"


def huey_settings(cfg) -> dict:
    """The keyword arguments alter0's Huey engine passes to SqliteHuey for this config."""
    from tasks.huey_engine.app import huey_options
    return huey_options(cfg)


def consumer_settings(cfg) -> dict:
    """The keyword arguments ``alter0 worker`` passes to its Huey Consumer for this config."""
    from tasks.huey_engine.consumer import consumer_options
    return consumer_options(cfg)


CFG = load_config()
SYNCHRONOUS = CFG["runtime.db.synchronous"]
huey = SqliteHuey("raw", **dict(huey_settings(CFG), filename=str(RAW_DIR / "huey.db")))
_local = threading.local()


def done_db() -> sqlite3.Connection:
    """This thread's connection to the done table: WAL, the same synchronous setting as alter0.db."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(str(RAW_DIR / "done.db"), timeout=30, isolation_level=None,
                                             check_same_thread=False)
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(DONE_DDL)
    return conn


@huey.task(priority=10, name="raw.a")  # priorities as alter0's route, generate, close
def step_a(item: int, enqueued_at: float) -> None:
    step_b(item, enqueued_at)


@huey.task(priority=0, name="raw.b")
def step_b(item: int, enqueued_at: float) -> None:
    step_c(item, enqueued_at)


@huey.task(priority=10, name="raw.c")
def step_c(item: int, enqueued_at: float) -> None:
    done_db().execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?)", (item, enqueued_at, time.time()))


def submit(item: int) -> None:
    """Enqueue the chain's first task, stamped with the enqueue time."""
    step_a(item, time.time())


def done_rows(lo: int, hi: int) -> list[tuple[int, float, float]]:
    """(item, enqueued_at, done_at) of the finished items in [lo, hi)."""
    return done_db().execute("SELECT item, enqueued_at, done_at FROM done WHERE item >= ? AND item < ?",
                             (lo, hi)).fetchall()


def main() -> None:
    """Run the raw consumer in the foreground with alter0's consumer settings."""
    from huey.consumer import Consumer
    done_db()
    settings = consumer_settings(CFG)
    Consumer(huey, **settings).run()
