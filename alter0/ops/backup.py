"""Online backup, checked restore and prune of the SQLite database, the Huey store and the config.

Backups read the live files with SQLite's backup API while web and worker keep running: the database
first, then the queue store, so a queue message may name a job the database snapshot lacks (the stage
ignores it) but a queued job never lacks a message it already had. Restore writes back through the same
API, so open connections see the restored data and no file is swapped under them.
Both report each step to an optional ``on_progress(done, total, what)`` (the CLI's bar on a terminal).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Callable

#: ``on_progress(done, total, what)``: the step about to run (done < total), then (total, total, "done").
Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    """The default: report nothing."""

from peewee import SqliteDatabase

from ..config import DEFAULT_CONFIG_PATH, Config
from ..errors import Conflict, InputError, NotFound
from ..paths import output_paths
from .. import archive
from ..archive import ArchiveError
from ..migrations import migrate
from .restore_config import executor_diff
from .verify import check_staged, schema_version_of, sqlite_only
from ..liveness import live_workers_in_file, stale_after

BACKUP_GLOB = "alter0-backup-*.tar.gz"
_NAME = re.compile(r"^alter0-backup-(\d{8}T\d{6}Z)")


def backup(cfg: Config, dest_dir: Path | None = None, label: str = "", on_progress: Progress = _no_progress) -> Path:
    """Snapshot database, queue store and config into backups/alter0-backup-<UTC>.tar.gz; return its path."""
    sqlite_only(cfg)
    paths = output_paths(cfg.output_dir)
    if not paths["db"].exists():
        raise NotFound(f"no database at {paths['db']}: nothing to back up")
    dest_dir = dest_dir or paths["backups"]
    dest_dir.mkdir(parents=True, exist_ok=True)
    total = 4
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".backup-") as tmp:
        members = {archive.DB_MEMBER: Path(tmp) / "alter0.db"}
        on_progress(0, total, "database snapshot")
        archive.snapshot_sqlite(paths["db"], members[archive.DB_MEMBER])
        on_progress(1, total, "queue store snapshot")
        if paths["queue"].exists():
            members[archive.QUEUE_MEMBER] = Path(tmp) / "huey.db"
            archive.snapshot_sqlite(paths["queue"], members[archive.QUEUE_MEMBER])
        on_progress(2, total, "config")
        if cfg.path and Path(cfg.path).is_file():
            members[archive.CONFIG_MEMBER] = Path(tmp) / "config.json"
            shutil.copyfile(cfg.path, members[archive.CONFIG_MEMBER])
        created = time.time()
        dest = _free_name(dest_dir, archive.archive_name(created, label))
        on_progress(3, total, f"writing {dest.name}")
        archive.write_archive(dest, members, {"schema_version": schema_version_of(members[archive.DB_MEMBER]),
                                              "created_at": created, "output_dir": str(cfg.output_dir)})
    on_progress(total, total, "done")
    return dest


def _free_name(folder: Path, name: str) -> Path:
    stem, n = name[: -len(".tar.gz")], 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}-{n}.tar.gz"
    return folder / name


def restore(cfg: Config, archive_path: Path, with_config: bool = False,
            approve: Callable[[list[str]], None] | None = None, on_progress: Progress = _no_progress) -> dict:
    """Check ``archive_path`` and write it over the live database and queue store (worker must be stopped).

    With ``with_config``, ``approve`` gets the executor-setting differences first and raises to refuse.
    """
    sqlite_only(cfg)
    paths = output_paths(cfg.output_dir)
    if not Path(archive_path).is_file():
        raise NotFound(f"no archive at {archive_path}")
    live = live_workers_in_file(paths["db"], stale_after(cfg))
    if live:
        names = ", ".join(f"{w['id']} (pid {w['pid']} on {w['host']})" for w in live)
        raise Conflict(f"a worker is running ({names}): stop it (systemctl stop alter0-worker) before restoring")
    paths["backups"].mkdir(parents=True, exist_ok=True)
    total = 6
    with tempfile.TemporaryDirectory(dir=paths["backups"], prefix=".restore-") as tmp:
        on_progress(0, total, "extracting the archive")
        manifest = archive.extract_archive(Path(archive_path), Path(tmp))
        staged = {name: Path(tmp) / name for name in manifest["members"]}
        on_progress(1, total, "checking its members")
        check_staged(manifest, staged)
        if with_config and archive.CONFIG_MEMBER in staged and approve is not None:
            approve(executor_diff(Path(cfg.path or DEFAULT_CONFIG_PATH), staged[archive.CONFIG_MEMBER]))
        on_progress(2, total, "keeping the files it replaces")
        replaced = _keep_replaced(cfg, paths, staged, with_config)
        on_progress(3, total, "writing the database back")
        _write_back(staged[archive.DB_MEMBER], paths["db"])
        on_progress(4, total, "writing the queue store back")
        if archive.QUEUE_MEMBER in staged:
            _write_back(staged[archive.QUEUE_MEMBER], paths["queue"])
        if with_config:
            if archive.CONFIG_MEMBER not in staged:
                raise ArchiveError("the archive holds no config to restore (drop --with-config)")
            target = Path(cfg.path or DEFAULT_CONFIG_PATH)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staged[archive.CONFIG_MEMBER], target)
    on_progress(5, total, "migrating")
    applied = _migrate_file(paths["db"])
    on_progress(total, total, "done")
    return {"archive": str(archive_path), "replaced_dir": str(replaced), "members": sorted(manifest["members"]),
            "schema_version": manifest["schema_version"], "migrated": applied}


def _keep_replaced(cfg: Config, paths: dict, staged: dict, with_config: bool) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    replaced = _free_dir(paths["backups"], f"replaced-{stamp}")
    if paths["db"].exists():
        archive.snapshot_sqlite(paths["db"], replaced / "alter0.db")
    if archive.QUEUE_MEMBER in staged and paths["queue"].exists():
        archive.snapshot_sqlite(paths["queue"], replaced / "huey.db")
    config = Path(cfg.path or DEFAULT_CONFIG_PATH)
    if with_config and config.is_file():
        shutil.copyfile(config, replaced / "config.json")
    return replaced


def _free_dir(folder: Path, name: str) -> Path:
    path, n = folder / name, 1
    while path.exists():
        n += 1
        path = folder / f"{name}-{n}"
    path.mkdir(parents=True)
    return path


def _write_back(src: Path, dest: Path) -> None:
    """Copy a staged database over a live one through the backup API, then put it back in WAL mode."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(str(src))
    target = sqlite3.connect(str(dest), timeout=30)
    try:
        source.backup(target, pages=-1)
        target.execute("PRAGMA journal_mode=WAL")
    finally:
        target.close()
        source.close()


def _migrate_file(path: Path) -> list[int]:
    database = SqliteDatabase(str(path), pragmas={"foreign_keys": 1, "busy_timeout": 30000})
    try:
        return migrate(database, backup_dir=None)
    finally:
        database.close()


def list_backups(folder: Path) -> list[Path]:
    """Backup archives in ``folder``, newest first."""
    found = [p for p in folder.glob(BACKUP_GLOB) if _NAME.match(p.name)]
    return sorted(found, key=lambda p: (_NAME.match(p.name).group(1), p.stat().st_mtime_ns), reverse=True)


def prune(cfg: Config, keep: int = 10) -> list[Path]:
    """Delete all but the newest ``keep`` backup archives; return what was deleted."""
    if keep < 0:
        raise InputError(f"--keep must be >= 0, got {keep}")
    folder = output_paths(cfg.output_dir)["backups"]
    if not folder.is_dir():
        return []
    doomed = list_backups(folder)[keep:]
    for path in doomed:
        path.unlink()
    for partial in folder.glob("*.partial"):
        if time.time() - partial.stat().st_mtime > 86400:
            partial.unlink()
    return doomed
