"""Versioned, non-destructive schema migrations, recorded in the schemaversion table.

Version 1 is the first released schema; ``tests/fixtures/schema_v1.sql`` freezes its DDL. A schema
change is one function plus one ``Migration`` entry, for example::

    def _v2_job_priority(m: SchemaMigrator, database: Database) -> None:
        migrate_ops(m.add_column("job", "priority", IntegerField(default=0)))

    MIGRATIONS = (Migration(2, "job.priority", _v2_job_priority),)

with the same field added to the model. ``tests/test_ops_migrations.py`` upgrades a v1 database and
checks that it ends up with exactly the schema a fresh database gets, so a model change without a
migration fails the tests.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from peewee import Database, PostgresqlDatabase, SqliteDatabase
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator
from playhouse.migrate import migrate as migrate_ops  # noqa: F401  (used by migration functions)

from . import archive
from .config import Config
from .errors import Alter0Error
from .models import ALL_MODELS, SchemaVersion, db
from .paths import output_paths

log = logging.getLogger(__name__)

BASELINE_VERSION = 1
VERSION_TABLE = SchemaVersion._meta.table_name


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply(migrator, database)`` moves the schema from ``version - 1`` to ``version``."""

    version: int
    note: str
    apply: Callable[[SchemaMigrator, Database], None]


def _v2_job_executor_pgid(m: SchemaMigrator, database: Database) -> None:
    """job.executor_pgid: the running executor's process group, killed when its worker is found dead."""
    from peewee import IntegerField
    migrate_ops(m.add_column("job", "executor_pgid", IntegerField(null=True)))


def _v3_api_tokens(m: SchemaMigrator, database: Database) -> None:
    """apitoken: per-user API tokens (sha256 only), made by ``alter0 token create``."""
    from .models import ApiToken
    with database.bind_ctx([ApiToken]):
        database.create_tables([ApiToken], safe=True)


def _v4_workspaces(m: SchemaMigrator, database: Database) -> None:
    """Workspaces: a task's repo, branch, worktree, workspace state and busy policy; the receipt table."""
    from peewee import CharField, TextField
    from .models import Receipt
    migrate_ops(m.add_column("task", "repo", TextField(null=True)),
                m.add_column("task", "branch", CharField(max_length=200, null=True)),
                m.add_column("task", "base", CharField(max_length=200, null=True)),
                m.add_column("task", "worktree", TextField(null=True)),
                m.add_column("task", "workspace_state", CharField(max_length=16, null=True)),
                m.add_column("task", "busy_policy", CharField(max_length=16, null=True)))
    with _bound(database):
        database.create_tables([Receipt])


def _v5_task_session_usage(m: SchemaMigrator, database: Database) -> None:
    """task.session_usage: the running totals an agent (codex) last reported for the task's session."""
    from peewee import TextField
    migrate_ops(m.add_column("task", "session_usage", TextField(null=True)))


def _v6_channels(m: SchemaMigrator, database: Database) -> None:
    """job.thread_key and the chat channel tables: thread bindings, inbox, delivery outbox, channel state."""
    from peewee import CharField
    from .models import CHANNEL_MODELS
    migrate_ops(m.add_column("job", "thread_key", CharField(max_length=200, null=True)))
    with database.bind_ctx(CHANNEL_MODELS):
        database.create_tables(CHANNEL_MODELS, safe=True)


def _v7_job_moved_from(m: SchemaMigrator, database: Database) -> None:
    """job.moved_from: the misrouted job a moved message re-runs (one successor per job, found by this index)."""
    from peewee import IntegerField
    migrate_ops(m.add_column("job", "moved_from", IntegerField(null=True)),
                m.add_index("job", ("moved_from",), False))


def _v8_notifications(m: SchemaMigrator, database: Database) -> None:
    """The notification feed, its readers' cursors, named leases, and an index on job.finished_at."""
    from .models import NOTIFY_MODELS
    migrate_ops(m.add_index("job", ("finished_at",), False))
    with database.bind_ctx(NOTIFY_MODELS):
        database.create_tables(NOTIFY_MODELS, safe=True)


def _v9_scope_status(m: SchemaMigrator, database: Database) -> None:
    """A task (scope, status) index in place of task (scope), and a job (status, scope) index in place of job
    (status) and job (scope): a scope's open tasks (the router's candidates) were found by reading every open
    task of every scope (through the status index), and an earlier job of a scope still routing by reading the
    scope's whole history."""
    migrate_ops(m.add_index("task", ("scope", "status"), False), m.drop_index("task", "task_scope"),
                m.add_index("job", ("status", "scope"), False), m.drop_index("job", "job_status"),
                m.drop_index("job", "job_scope"))


#: Every migration after the baseline, in version order.
MIGRATIONS: tuple[Migration, ...] = (Migration(2, "job.executor_pgid", _v2_job_executor_pgid),
                                     Migration(3, "apitoken table", _v3_api_tokens),
                                     Migration(4, "workspaces: task repo/branch/worktree/busy_policy, receipt",
                                               _v4_workspaces),
                                     Migration(5, "task.session_usage", _v5_task_session_usage),
                                     Migration(6, "chat channels", _v6_channels),
                                     Migration(7, "job.moved_from", _v7_job_moved_from),
                                     Migration(8, "notifications", _v8_notifications),
                                     Migration(9, "task (scope, status) and job (status, scope) indexes", _v9_scope_status))


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The schema version the given migrations lead to."""
    return max([BASELINE_VERSION, *(m.version for m in migrations)])


EXPECTED_VERSION = latest()


class SchemaError(Alter0Error):
    """The database schema cannot be brought to the version this alter0 expects."""

    code, status, exit_code = "schema", 500, 9


def current_version(database: Database | None = None) -> int:
    """The database's schema version: 0 when empty, 1 for an unstamped first-release database."""
    database = database or db.obj
    tables = set(database.get_tables())
    stamped = None
    if VERSION_TABLE in tables:
        stamped = database.execute_sql(f'SELECT MAX(version) FROM "{VERSION_TABLE}"').fetchone()[0]
    if stamped is not None:
        return int(stamped)
    return BASELINE_VERSION if "task" in tables else 0


def migrator_for(database: Database) -> SchemaMigrator:
    """The playhouse migrator that speaks the database's dialect."""
    if isinstance(database, SqliteDatabase):
        return SqliteMigrator(database)
    if isinstance(database, PostgresqlDatabase):
        return PostgresqlMigrator(database)
    return SchemaMigrator.from_database(database)


def migrate(database: Database, backup_dir: Path | None = None,
            migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the schema to the latest version (backing up first); return the versions applied."""
    target = latest(migrations)
    version = current_version(database)
    if version > target:
        raise SchemaError(f"database schema version {version} is newer than this alter0 supports ({target}): "
                          "upgrade alter0, or restore a backup taken with this version")
    if version == 0:
        _create(database, target)
        return []
    if version == target and _stamped(database):
        return []
    with _foreign_keys_off(database), _schema_lock(database):
        version = current_version(database)  # another process may have migrated meanwhile
        if version < target and backup_dir is not None:  # readers still see the database: WAL
            backup_before_migration(database, backup_dir, version, target)
        if not _stamped(database):
            with _bound(database):
                database.create_tables([SchemaVersion], safe=True)
            _stamp(database, version, "baseline (first released schema, unstamped)")
        applied = []
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version <= version:
                continue
            log.info("applying schema migration %s (%s)", m.version, m.note)
            m.apply(migrator_for(database), database)
            _stamp(database, m.version, m.note)
            applied.append(m.version)
        _check_foreign_keys(database)
    return applied


def _create(database: Database, target: int) -> None:
    with _schema_lock(database), _bound(database):
        if current_version(database) == 0:
            database.create_tables(ALL_MODELS, safe=True)
            _stamp(database, target, "created")


def _stamped(database: Database) -> bool:
    if VERSION_TABLE not in database.get_tables():
        return False
    return database.execute_sql(f'SELECT COUNT(*) FROM "{VERSION_TABLE}"').fetchone()[0] > 0


def _stamp(database: Database, version: int, note: str) -> None:
    database.execute_sql(f'INSERT INTO "{VERSION_TABLE}" (version, applied_at, note) VALUES (?, ?, ?)'
                         .replace("?", database.param), (version, time.time(), note))


@contextmanager
def _bound(database: Database) -> Iterator[None]:
    if db.obj is database:
        yield
    else:
        with database.bind_ctx(ALL_MODELS):
            yield


@contextmanager
def _schema_lock(database: Database) -> Iterator[None]:
    """One transaction that excludes other migrating processes."""
    if isinstance(database, SqliteDatabase):
        with database.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            if isinstance(database, PostgresqlDatabase):
                database.execute_sql("SELECT pg_advisory_xact_lock(4205010)")
            yield


@contextmanager
def _foreign_keys_off(database: Database) -> Iterator[None]:
    """SQLite table rebuilds must not cascade deletes: foreign keys are off while migrating."""
    if not isinstance(database, SqliteDatabase):
        yield
        return
    database.execute_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        database.execute_sql("PRAGMA foreign_keys=ON")


def _check_foreign_keys(database: Database) -> None:
    if isinstance(database, SqliteDatabase):
        bad = database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise SchemaError(f"migration left {len(bad)} broken foreign key(s), first: {bad[0]}; rolled back")


def backup_before_migration(database: Database, backup_dir: Path, version: int, target: int) -> Path | None:
    """Archive the SQLite database before migrating; PostgreSQL is left to pg_dump (logged)."""
    if not isinstance(database, SqliteDatabase) or database.database in ("", ":memory:"):
        log.warning("no automatic backup before migrating this database: take one (pg_dump) first")
        return None
    backup_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=backup_dir) as tmp:
        snap = Path(tmp) / "alter0.db"
        archive.snapshot_sqlite(Path(database.database), snap)
        dest = backup_dir / archive.archive_name(time.time(), f"pre-v{target}")
        archive.write_archive(dest, {archive.DB_MEMBER: snap},
                              {"schema_version": version, "reason": f"before migrating to v{target}"})
    log.info("backed up the database to %s before migrating v%s -> v%s", dest, version, target)
    return dest


def schema_sql(conn: sqlite3.Connection) -> str:
    """The DDL of a SQLite database's tables and indexes, in a stable order."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                        "AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name").fetchall()
    return "".join(f"{sql};\n" for _, _, sql in rows)


def schema_shape(conn: sqlite3.Connection) -> dict:
    """Tables -> columns, indexes and foreign keys, order-free, for comparing two SQLite schemas."""
    shape = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                         "AND name NOT LIKE 'sqlite_%'")]
    for t in tables:
        cols = {r[1]: (r[2].upper(), r[3], r[4], r[5]) for r in conn.execute(f'PRAGMA table_info("{t}")')}
        idx = {(r[1], r[2], tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{r[1]}")')))
               for r in conn.execute(f'PRAGMA index_list("{t}")')}
        fks = {r[2:7] for r in conn.execute(f'PRAGMA foreign_key_list("{t}")')}
        shape[t] = {"columns": cols, "indexes": idx, "foreign_keys": fks}
    return shape


def fresh_schema_sql() -> str:
    """The DDL the current models create on an empty SQLite database."""
    database = SqliteDatabase(":memory:")
    with database.bind_ctx(ALL_MODELS):
        database.create_tables(ALL_MODELS)
    return schema_sql(database.connection())


if __name__ == "__main__":  # python -m alter0.migrations dump  -> DDL of the current models
    if sys.argv[1:] != ["dump"]:
        sys.exit("usage: python -m alter0.migrations dump")
    sys.stdout.write("-- alter0 schema v1, the first released schema: frozen once released (add a Migration instead).\n"
                     "-- Generated by: python -m alter0.migrations dump > tests/fixtures/schema_v1.sql\n")
    sys.stdout.write(fresh_schema_sql())


def open_current(cfg: Config) -> Database:
    """The start-up path: open the configured database and bring its schema to the expected version (a new
    database gets the current tables; an older one is backed up to output/backups/ and migrated first)."""
    from .database import open_database
    database = open_database(cfg)
    with database.connection_context():
        migrate(database, output_paths(cfg.output_dir)["backups"])
    return database
