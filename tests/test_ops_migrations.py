"""Schema migrations: a v1 database (frozen DDL) upgrades to the current schema and keeps every row."""

from __future__ import annotations

import sqlite3
import tarfile
import threading
from pathlib import Path

import pytest
from peewee import IntegerField, SqliteDatabase

from alter0.database import LockedSqliteDatabase
from alter0.migrations import open_current
from alter0.models import Job, Message, SchemaVersion, Task, TaskMemory
from alter0 import archive
from alter0.migrations import (EXPECTED_VERSION, MIGRATIONS, Migration, SchemaError, current_version,
                                   fresh_schema_sql, latest, migrate, migrate_ops, schema_shape)
from support.helpers import FIXTURES, make_cfg

FIXTURE = FIXTURES / "schema_v1.sql"


def insert(conn: sqlite3.Connection, table: str, **values) -> int:
    """Insert a row, giving NOT NULL columns without a value a zero of their type."""
    for _, name, typ, notnull, _, pk in conn.execute(f'PRAGMA table_info("{table}")'):
        if notnull and not pk and name not in values:
            values[name] = "" if "CHAR" in typ.upper() or "TEXT" in typ.upper() else 0
    cols = ", ".join(f'"{c}"' for c in values)
    cur = conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(values))})',
                       tuple(values.values()))
    return cur.lastrowid


def make_v1_db(path: Path, tasks: int = 3) -> dict:
    """A database as the first release created it (no version stamp), with tasks, messages, jobs, memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    counts = {"task": 0, "message": 0, "job": 0}
    for t in range(tasks):
        task_id = insert(conn, "task", title=f"task {t}", status="open", scope="user:u", user_id="u",
                         created_at=1.0, updated_at=1.0, last_active_at=1.0)
        user = insert(conn, "message", task_id=task_id, role="user", content=f"question {t}", user_id="u",
                      created_at=1.0)
        reply = insert(conn, "message", task_id=task_id, role="assistant", content=f"answer {t}", user_id="u",
                       created_at=2.0)
        insert(conn, "job", status="done", content=f"question {t}", user_id="u", scope="user:u", task_id=task_id,
               user_message_id=user, reply_message_id=reply, created_at=1.0, updated_at=2.0)
        insert(conn, "taskmemory", task_id=task_id, summary="", turns="[]", participants='["u"]', updated_at=2.0)
        counts["task"] += 1
        counts["message"] += 2
        counts["job"] += 1
    conn.commit()
    conn.close()
    return counts


def test_upgraded_v1_schema_equals_a_fresh_schema(tmp_path):
    # Given a database made from the frozen v1 DDL, migrated to the latest version
    v1 = sqlite3.connect(tmp_path / "v1.db")
    v1.executescript(FIXTURE.read_text())
    v1.close()
    database = SqliteDatabase(str(tmp_path / "v1.db"))
    migrate(database)
    upgraded = schema_shape(database.connection())
    # Then it has exactly the schema the current models create
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(fresh_schema_sql())
    assert upgraded == schema_shape(fresh), (
        "the models differ from schema v1 + MIGRATIONS: add a Migration in alter0/migrations.py "
        "(before the first release only: python -m alter0.migrations dump > tests/fixtures/schema_v1.sql)")


def test_new_database_is_created_and_stamped(tmp_path):
    database = open_current(make_cfg(tmp_path))
    assert current_version(database) == EXPECTED_VERSION
    assert [r.note for r in SchemaVersion.select()] == ["created"]


def test_v1_database_keeps_every_row_when_opened(tmp_path):
    cfg = make_cfg(tmp_path)
    counts = make_v1_db(cfg.output_dir / "db" / "alter0.db")
    database = open_current(cfg)
    assert current_version(database) == EXPECTED_VERSION
    assert (Task.select().count(), Message.select().count(), Job.select().count()) == \
        (counts["task"], counts["message"], counts["job"])
    assert sorted(m.content for m in Message.select()) == sorted(
        [f"question {i}" for i in range(3)] + [f"answer {i}" for i in range(3)])
    assert all(j.reply_message_id and j.user_message_id for j in Job.select())
    assert TaskMemory.select().count() == 3
    assert SchemaVersion.get(SchemaVersion.version == 1).note.startswith("baseline")


def _v2_add_priority(m, database) -> None:
    migrate_ops(m.add_column("job", "priority", IntegerField(default=0)),
                m.add_index("job", ("priority",), False))


def _v3_rebuild_message(m, database) -> None:
    # drop_not_null makes SqliteMigrator rebuild the message table, which job references (ON DELETE SET NULL)
    migrate_ops(m.drop_not_null("message", "channel_id"))


PROOF = (Migration(2, "job.priority", _v2_add_priority), Migration(3, "message.channel_id nullable",
                                                                   _v3_rebuild_message))


def test_proof_migrations_apply_in_order_keep_data_and_back_up_first(tmp_path):
    # Given a v1 database with data, and two more migrations (one rebuilds a referenced table)
    path = tmp_path / "db" / "alter0.db"
    counts = make_v1_db(path)
    database = SqliteDatabase(str(path), pragmas={"foreign_keys": 1, "journal_mode": "wal"})
    # When migrating with a backup directory
    applied = migrate(database, tmp_path / "backups", migrations=PROOF)
    # Then both applied, nothing lost, foreign keys intact (no cascade while rebuilding)
    assert applied == [2, 3] and current_version(database) == latest(PROOF) == 3
    conn = database.connection()
    assert conn.execute("SELECT COUNT(*) FROM message").fetchone()[0] == counts["message"]
    assert conn.execute("SELECT COUNT(*) FROM job WHERE user_message_id IS NOT NULL "
                        "AND reply_message_id IS NOT NULL").fetchone()[0] == counts["job"]
    assert conn.execute("SELECT COUNT(*) FROM job WHERE priority = 0").fetchone()[0] == counts["job"]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # And a backup of the v1 database was taken first
    [backup] = list((tmp_path / "backups").glob("alter0-backup-*-pre-v3.tar.gz"))
    manifest = archive.extract_archive(backup, tmp_path / "x")
    assert manifest["schema_version"] == 1
    old = sqlite3.connect(tmp_path / "x" / archive.DB_MEMBER)
    assert old.execute("SELECT COUNT(*) FROM message").fetchone()[0] == counts["message"]
    assert "priority" not in {r[1] for r in old.execute("PRAGMA table_info(job)")}
    old.close()
    # And running again applies nothing
    assert migrate(database, tmp_path / "backups", migrations=PROOF) == []
    database.close()


def test_failing_migration_rolls_back_and_keeps_the_version(tmp_path):
    path = tmp_path / "alter0.db"
    make_v1_db(path)

    def broken(m, database) -> None:
        migrate_ops(m.add_column("job", "priority", IntegerField(default=0)))
        raise RuntimeError("boom")

    database = SqliteDatabase(str(path))
    with pytest.raises(RuntimeError):
        migrate(database, migrations=(Migration(2, "broken", broken),))
    assert current_version(database) == 1
    assert "priority" not in {c.name for c in database.get_columns("job")}
    database.close()


def test_newer_database_is_refused(tmp_path):
    database = SqliteDatabase(str(tmp_path / "a.db"))
    migrate(database)
    database.execute_sql("INSERT INTO schemaversion (version, applied_at, note) VALUES (99, 0, 'future')")
    with pytest.raises(SchemaError, match="newer than this alter0"):
        migrate(database)
    database.close()


def test_concurrent_first_opens_stamp_once(tmp_path):
    path = tmp_path / "a.db"
    errors = []

    def opener() -> None:
        # the class alter0 opens its database with: a new file is made a WAL database under its write lock
        database = LockedSqliteDatabase(str(path), timeout=30, pragmas={"journal_mode": "wal", "busy_timeout": 30000})
        try:
            migrate(database)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schemaversion").fetchall() == [(EXPECTED_VERSION,)]
    conn.close()


def test_release_has_no_gaps_in_migration_versions():
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(2, 2 + len(versions))), "migration versions must be 2, 3, ... in order"


def test_archive_written_by_migration_is_a_tar_gz(tmp_path):
    path = tmp_path / "db" / "alter0.db"
    make_v1_db(path)
    database = SqliteDatabase(str(path))
    migrate(database, tmp_path / "b", migrations=PROOF[:1])
    [backup] = (tmp_path / "b").iterdir()
    with tarfile.open(backup) as tar:
        assert sorted(tar.getnames()) == [archive.DB_MEMBER, archive.MANIFEST]
    database.close()
