"""Open the database (SQLite in WAL mode by default, PostgreSQL by URL) and own its transactions."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse.db_url import connect

from .config import Config
from .models import db
from .ops.migrations import migrate
from .paths import output_paths

SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "cache_size": -16000}


def open_database(cfg: Config) -> Database:
    """Bind the models to the configured database and bring its schema to the expected version.

    A new database gets the current tables; an older one is backed up to output/backups/ and migrated.
    """
    url = cfg["runtime.db.url"]
    if url:
        database = connect(url)
    else:
        path: Path = output_paths(cfg.output_dir)["db"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pragmas = dict(SQLITE_PRAGMAS, synchronous=cfg["runtime.db.synchronous"])
        database = SqliteDatabase(str(path), pragmas=pragmas, check_same_thread=False, timeout=30)
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
        with db.atomic("IMMEDIATE") as tx:
            yield tx
    else:
        with db.atomic() as tx:
            yield tx
