"""Verification of alter0's SQLite files, live or inside a backup archive.

integrity_check and foreign_key_check of the database, its schema version, and the Huey store's
integrity_check plus a count of each of its tables. Each check is reported to an optional
``on_progress(done, total, what)`` before it runs (the CLI's bar on a terminal).
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from peewee import SqliteDatabase

from ..config import Config
from ..errors import Alter0Error
from ..paths import output_paths
from .. import archive
from ..archive import ArchiveError
from ..migrations import EXPECTED_VERSION, current_version

QUEUE_TABLES = ("task", "schedule", "kv")


@dataclass
class Check:
    """One verification result."""

    name: str
    ok: bool
    detail: str = ""


def schema_version_of(path: Path) -> int:
    """The schema version stored in a SQLite database file."""
    database = SqliteDatabase(str(path))
    try:
        return current_version(database)
    finally:
        database.close()


def sqlite_only(cfg: Config) -> None:
    """Refuse configurations whose database is not the SQLite file under output/db."""
    if cfg["runtime.db.url"]:
        raise Alter0Error("backup, restore and verify cover the SQLite database only; "
                          "use pg_dump / pg_restore for runtime.db.url databases", code="unsupported")


def check_staged(manifest: dict, staged: dict[str, Path]) -> None:
    """Integrity and schema version of extracted archive members; ArchiveError if unfit."""
    for name in (archive.DB_MEMBER, archive.QUEUE_MEMBER):
        if name in staged:
            check = _probe(name, staged[name], "PRAGMA integrity_check", _integrity_rows)
            if not check.ok:
                raise ArchiveError(f"archive member {name} fails integrity_check: {check.detail}")
    version = schema_version_of(staged[archive.DB_MEMBER])
    if version != manifest["schema_version"]:
        raise ArchiveError(f"database schema version {version} differs from the manifest's "
                           f"{manifest['schema_version']}")
    if version > EXPECTED_VERSION or version < 1:
        raise ArchiveError(f"archive schema version {version} is not restorable by this alter0 "
                           f"(expects 1..{EXPECTED_VERSION}): upgrade alter0 first")


def _probe(name: str, path: Path, sql: str, judge) -> Check:
    """Run one read-only query against a SQLite file and judge its rows as (ok, detail)."""
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            ok, detail = judge(conn.execute(sql).fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Check(name, False, str(exc))
    return Check(name, ok, detail)


def _integrity_rows(rows: list) -> tuple[bool, str]:
    texts = [r[0] for r in rows]
    return texts == ["ok"], "; ".join(texts[:5])


#: ``on_progress(done, total, what)``: the check about to run, then (total, total, "done").
Progress = Callable[[int, int, str], None]


def _schema_check(db_path: Path, name: str) -> Check:
    try:
        version = schema_version_of(db_path)
        return Check(name, 1 <= version <= EXPECTED_VERSION, f"{version} (expected {EXPECTED_VERSION})")
    except Exception as exc:  # a damaged file may fail in any driver call
        return Check(name, False, str(exc))


def _checks_of(db_path: Path, queue_path: Path | None, label: str = "",
               on_progress: Progress | None = None, done: int = 0) -> list[Check]:
    """Run the checks of one database (and queue store), reporting each; ``done`` steps came before."""
    runs = [(f"{label}database integrity_check",
             lambda name: _probe(name, db_path, "PRAGMA integrity_check", _integrity_rows)),
            (f"{label}database foreign keys",
             lambda name: _probe(name, db_path, "PRAGMA foreign_key_check",
                                 lambda rows: (not rows, f"{len(rows)} broken, first {rows[0]}" if rows else "ok"))),
            (f"{label}database schema version", lambda name: _schema_check(db_path, name))]
    if queue_path is not None:
        counts = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM \"{t}\"" for t in QUEUE_TABLES)
        runs += [(f"{label}queue store integrity_check",
                  lambda name: _probe(name, queue_path, "PRAGMA integrity_check", _integrity_rows)),
                 (f"{label}queue store tables",
                  lambda name: _probe(name, queue_path, counts,
                                      lambda rows: (True, ", ".join(f"{t}={n}" for t, n in rows))))]
    checks = []
    for i, (name, run) in enumerate(runs):
        if on_progress:
            on_progress(done + i, done + len(runs), name)
        checks.append(run(name))
    if on_progress:
        on_progress(done + len(runs), done + len(runs), "done")
    return checks


def verify(cfg: Config, archive_path: Path | None = None, on_progress: Progress | None = None) -> list[Check]:
    """Integrity, foreign keys, schema version and queue store checks of the live files or an archive."""
    sqlite_only(cfg)
    if archive_path is not None:
        return _verify_archive(Path(archive_path), on_progress)
    paths = output_paths(cfg.output_dir)
    if not paths["db"].exists():
        return [Check("database present", False, f"no database at {paths['db']}")]
    return _checks_of(paths["db"], paths["queue"] if paths["queue"].exists() else None, on_progress=on_progress)


def _verify_archive(path: Path, on_progress: Progress | None = None) -> list[Check]:
    with tempfile.TemporaryDirectory(prefix="alter0-verify-") as tmp:
        if on_progress:
            on_progress(0, 6, "extracting the archive")
        try:
            manifest = archive.extract_archive(path, Path(tmp))
            staged = {name: Path(tmp) / name for name in manifest["members"]}
            check_staged(manifest, staged)
        except ArchiveError as exc:
            return [Check("archive members and checksums", False, exc.message)]
        queue = staged.get(archive.QUEUE_MEMBER)
        return [Check("archive members and checksums", True, "ok"),
                *_checks_of(staged[archive.DB_MEMBER], queue, "archive ", on_progress, done=1)]
