"""Backup, restore, verify and prune: online snapshots, checked archives, refusal while a worker runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sqlite3
import tarfile
import threading
import time
from pathlib import Path

import pytest
from huey.storage import SqliteStorage

from alter0.migrations import open_current
from alter0.errors import Conflict
from alter0.models import Message, Task, Worker, db
from alter0 import archive
from alter0.archive import ArchiveError
from alter0.ops.backup import backup, list_backups, prune, restore
from alter0.ops.verify import verify
from alter0.migrations import EXPECTED_VERSION
from support.helpers import make_cfg, open_cfg


def add_task(title: str, messages: int = 2) -> Task:
    task = Task.create(title=title, scope="user:u", user_id="u")
    for i in range(messages):
        Message.create(task=task, role="user" if i % 2 == 0 else "assistant", content=f"{title} #{i}", user_id="u")
    return task


@pytest.fixture
def install(tmp_path):
    """An output dir with a database holding two tasks, a Huey store with one message, and a config file."""
    cfg = open_cfg(tmp_path / "a")
    add_task("first")
    add_task("second")
    storage = SqliteStorage(name="alter0", filename=str(cfg.output_dir / "queue" / "huey.db"))
    storage.enqueue(b"queued-message")
    storage.close()
    return cfg


def contents() -> list[str]:
    return sorted(m.content for m in Message.select())


def test_backup_archive_holds_snapshots_config_and_manifest(install, tmp_path):
    path = backup(install)
    assert path.parent == install.output_dir / "backups"
    assert path.name.startswith("alter0-backup-") and path.name.endswith("Z.tar.gz")
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == sorted([archive.MANIFEST, archive.DB_MEMBER, archive.QUEUE_MEMBER,
                                                 archive.CONFIG_MEMBER])
    manifest = archive.extract_archive(path, tmp_path / "x")
    assert manifest["schema_version"] == EXPECTED_VERSION
    assert set(manifest["members"]) == {archive.DB_MEMBER, archive.QUEUE_MEMBER, archive.CONFIG_MEMBER}
    conn = sqlite3.connect(tmp_path / "x" / archive.DB_MEMBER)
    assert conn.execute("SELECT COUNT(*) FROM message").fetchone()[0] == 4
    conn.close()
    assert backup(install) != path  # same second: a second, distinct archive


def test_restore_brings_back_the_backup_and_keeps_what_it_replaced(install):
    # Given a backup, then changes
    before = contents()
    path = backup(install)
    add_task("after backup")
    Message.delete().where(Message.content == "first #0").execute()
    # When restoring
    result = restore(install, path)
    # Then the database is as backed up (seen through the connection that stayed open)
    assert contents() == before
    replaced = Path(result["replaced_dir"])
    assert replaced.parent == install.output_dir / "backups" and replaced.name.startswith("replaced-")
    old = sqlite3.connect(replaced / "alter0.db")
    assert "after backup #0" in {r[0] for r in old.execute("SELECT content FROM message")}
    old.close()
    assert (replaced / "huey.db").exists()
    assert all(c.ok for c in verify(install)), verify(install)
    storage = SqliteStorage(name="alter0", filename=str(install.output_dir / "queue" / "huey.db"))
    assert storage.queue_size() == 1
    storage.close()


def test_restore_into_an_empty_output_dir(install, tmp_path):
    path = backup(install)
    before = contents()
    other = make_cfg(tmp_path / "b")
    restore(other, path)
    open_current(other)
    assert contents() == before


def beat(pid: int, host: str | None = None, age: float = 0.0, state: str = "running") -> None:
    Worker.delete().execute()
    Worker.create(id="w1", host=host or socket.gethostname(), pid=pid, last_beat=time.time() - age, state=state)


def test_restore_refuses_while_a_worker_heartbeat_is_live(install):
    path = backup(install)
    beat(os.getpid())
    with pytest.raises(Conflict, match="a worker is running"):
        restore(install, path)
    beat(os.getpid(), host="elsewhere")  # another host: the heartbeat alone counts
    with pytest.raises(Conflict):
        restore(install, path)


@pytest.mark.parametrize("case", ["stale", "stopped", "dead_pid"])
def test_restore_allowed_when_the_worker_is_gone(install, case):
    path = backup(install)
    if case == "stale":
        beat(os.getpid(), age=60)
    elif case == "stopped":
        beat(os.getpid(), state="stopped")
    else:
        beat(2**22 + 12345)  # no such pid on this host
    restore(install, path)


def rewrite(src: Path, dest: Path, edit) -> Path:
    """Copy an archive member by member through ``edit(name, data) -> [(TarInfo, bytes)]``."""
    with tarfile.open(src) as tar, tarfile.open(dest, "w:gz") as out:
        for info in tar.getmembers():
            data = tar.extractfile(info).read()
            for new_info, new_data in edit(info, data):
                out.addfile(new_info, io.BytesIO(new_data) if new_data is not None else None)
    return dest


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _flip_db_byte(info, data):
    if info.name == archive.DB_MEMBER:
        data = data[:-1] + bytes([data[-1] ^ 1])
    return [(info, data)]


def _add(extra):
    def edit(info, data):
        out = [(info, data)]
        if info.name == archive.MANIFEST:
            out.append(extra)
        return out
    return edit


def _symlink():
    info = tarfile.TarInfo(archive.CONFIG_MEMBER)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info, None


def _drop_manifest(info, data):
    return [] if info.name == archive.MANIFEST else [(info, data)]


def _future_version(info, data):
    if info.name == archive.MANIFEST:
        manifest = json.loads(data)
        manifest["schema_version"] = EXPECTED_VERSION + 1
        return [_file(info.name, json.dumps(manifest).encode())]
    return [(info, data)]


TAMPERS = {
    "checksum": (_flip_db_byte, "does not match its sha256"),
    "traversal": (_add(_file("../evil.db", b"x")), "path traversal"),
    "absolute": (_add(_file("/tmp/evil.db", b"x")), "path traversal"),
    "symlink": (_add(_symlink()), "not a regular file"),
    "unexpected": (_add(_file("db/other.db", b"x")), "unexpected archive member"),
    "no_manifest": (_drop_manifest, "lacks manifest.json"),
    "future_schema": (_future_version, "differs from the manifest"),
}


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_restore_rejects_a_tampered_archive_and_changes_nothing(install, tmp_path, case):
    edit, message = TAMPERS[case]
    good = backup(install)
    bad = rewrite(good, tmp_path / f"bad-{case}.tar.gz", edit)
    add_task("live only")
    before = contents()
    with pytest.raises(ArchiveError, match=message):
        restore(install, bad)
    assert contents() == before
    assert not list((install.output_dir / "backups").glob("replaced-*"))
    assert not (tmp_path / "evil.db").exists()
    assert not all(c.ok for c in verify(install, bad))


def resign(files: dict[str, bytes], dest: Path, **manifest_changes) -> Path:
    """Pack ``files`` with a manifest whose checksums match them (a careful forger's archive)."""
    manifest = dict(json.loads(files[archive.MANIFEST]), **manifest_changes)
    for name, entry in manifest["members"].items():
        entry["sha256"] = hashlib.sha256(files[name]).hexdigest()
    files = dict(files, **{archive.MANIFEST: json.dumps(manifest).encode()})
    with tarfile.open(dest, "w:gz") as out:
        for name, data in files.items():
            info, data = _file(name, data)
            out.addfile(info, io.BytesIO(data))
    return dest


def test_restore_rejects_a_database_newer_than_this_alter0(install, tmp_path):
    # Given an archive whose database and manifest both claim a future schema, with valid checksums
    with tarfile.open(backup(install)) as tar:
        files = {i.name: tar.extractfile(i).read() for i in tar.getmembers()}
    path = tmp_path / "n.db"
    path.write_bytes(files[archive.DB_MEMBER])
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schemaversion VALUES (?, 0, 'future')", (EXPECTED_VERSION + 1,))
    conn.commit()
    conn.close()
    files[archive.DB_MEMBER] = path.read_bytes()
    bad = resign(files, tmp_path / "newer.tar.gz", schema_version=EXPECTED_VERSION + 1)
    # Then restore refuses it on the version alone
    with pytest.raises(ArchiveError, match="not restorable by this alter0"):
        restore(install, bad)


def test_verify_passes_on_a_healthy_install_and_archive(install):
    assert [c.name for c in verify(install) if not c.ok] == []
    path = backup(install)
    checks = verify(install, path)
    assert checks and all(c.ok for c in checks), checks


def test_verify_reports_broken_foreign_keys_and_a_broken_queue_store(install):
    db.obj.execute_sql("PRAGMA foreign_keys=OFF")
    Message.create(task=9999, role="user", content="orphan", user_id="u")
    db.obj.execute_sql("PRAGMA foreign_keys=ON")
    conn = sqlite3.connect(install.output_dir / "queue" / "huey.db")
    conn.execute("DROP TABLE schedule")
    conn.commit()
    conn.close()
    failed = {c.name for c in verify(install) if not c.ok}
    assert failed == {"database foreign keys", "queue store tables"}


def test_verify_reports_a_corrupt_database(install):
    db.obj.close()
    path = install.output_dir / "db" / "alter0.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(page * 2 + 100, min(len(data), page * 6)):
        data[i] = 0x5A
    path.write_bytes(bytes(data))
    assert "database integrity_check" in {c.name for c in verify(install) if not c.ok}


def test_prune_keeps_the_newest(install):
    folder = install.output_dir / "backups"
    names = [f"alter0-backup-2024010{d}T000000Z.tar.gz" for d in range(1, 8)]
    for name in names:
        (folder / name).write_bytes(b"")
    (folder / "unrelated.tar.gz").write_bytes(b"")
    removed = prune(install, keep=3)
    assert sorted(p.name for p in removed) == names[:4]
    assert [p.name for p in list_backups(folder)] == names[4:][::-1]
    assert (folder / "unrelated.tar.gz").exists()
    assert prune(install, keep=3) == []


def test_backup_while_writes_flow_holds_every_committed_message(install, tmp_path):
    # Given a writer committing messages from another connection, continuously
    stop = threading.Event()
    committed: list[tuple[float, str]] = []
    path = install.output_dir / "db" / "alter0.db"

    def writer() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        task_id = conn.execute("SELECT id FROM task LIMIT 1").fetchone()[0]
        n = 0
        while not stop.is_set():
            content = f"flow {n}"
            conn.execute("INSERT INTO message (task_id, role, content, user_id, channel_id, created_at) "
                         "VALUES (?, 'user', ?, 'u', '', ?)", (task_id, content, time.time()))
            committed.append((time.monotonic(), content))
            n += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    # When backing up mid-stream
    started = time.monotonic()
    archive_path = backup(install)
    time.sleep(0.2)
    stop.set()
    thread.join()
    before = {c for t, c in committed if t < started}
    assert len(before) > 10
    # Then the restored copy verifies and holds every message committed before the backup began
    other = make_cfg(tmp_path / "restored")
    restore(other, archive_path)
    assert all(c.ok for c in verify(other)), verify(other)
    conn = sqlite3.connect(other.output_dir / "db" / "alter0.db")
    restored = {r[0] for r in conn.execute("SELECT content FROM message WHERE content LIKE 'flow %'")}
    conn.close()
    assert before <= restored
