"""Consistent SQLite snapshots and the backup archive format (tar.gz + manifest.json with sha256s)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import time
from pathlib import Path, PurePosixPath

from . import __version__
from .errors import Alter0Error

FORMAT = 1
MANIFEST = "manifest.json"
DB_MEMBER = "db/alter0.db"
QUEUE_MEMBER = "queue/huey.db"
CONFIG_MEMBER = "config/config.json"
#: Members an archive may hold; anything else makes it invalid.
ALLOWED = frozenset({MANIFEST, DB_MEMBER, QUEUE_MEMBER, CONFIG_MEMBER})
REQUIRED = frozenset({MANIFEST, DB_MEMBER})
#: Largest member accepted on restore, in bytes (guards against decompression bombs).
MAX_MEMBER_BYTES = 64 * 1024**3


class ArchiveError(Alter0Error):
    """A backup archive is malformed, tampered with, or does not fit this alter0."""

    code, status, exit_code = "bad_archive", 400, 8


def snapshot_sqlite(src: Path, dest: Path, timeout: float = 30.0) -> None:
    """Copy a live SQLite database to ``dest`` with the online backup API, in one consistent step."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(str(src), timeout=timeout)
    target = sqlite3.connect(str(dest))
    try:
        source.backup(target, pages=-1)  # one step: a single read transaction, so one point in time
        target.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
    finally:
        target.close()
        source.close()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def archive_name(when: float, label: str = "") -> str:
    """alter0-backup-<UTC timestamp>[-label].tar.gz."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"alter0-backup-{stamp}{'-' + label if label else ''}.tar.gz"


def write_archive(dest: Path, members: dict[str, Path], meta: dict) -> dict:
    """Write ``members`` (arcname -> file) and a manifest to ``dest`` atomically; return the manifest."""
    unknown = set(members) - ALLOWED
    if unknown:
        raise ValueError(f"not archive members: {sorted(unknown)}")
    manifest = dict(meta, format=FORMAT, alter0_version=__version__,
                    members={name: {"sha256": sha256_file(p), "size": p.stat().st_size}
                             for name, p in sorted(members.items())})
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    tmp = dest.with_name(dest.name + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
        tar.addfile(info, io.BytesIO(body))
        for name, path in sorted(members.items()):
            tar.add(str(path), arcname=name, recursive=False)
    tmp.replace(dest)
    return manifest


def _check_member(info: tarfile.TarInfo, seen: set[str]) -> None:
    name = info.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
        raise ArchiveError(f"archive member {name!r} escapes the archive (path traversal)")
    if not info.isfile():
        raise ArchiveError(f"archive member {name!r} is not a regular file (links and devices are refused)")
    if name not in ALLOWED:
        raise ArchiveError(f"unexpected archive member {name!r}; allowed: {', '.join(sorted(ALLOWED))}")
    if name in seen:
        raise ArchiveError(f"archive member {name!r} appears twice")
    if info.size > MAX_MEMBER_BYTES:
        raise ArchiveError(f"archive member {name!r} is too large ({info.size} bytes)")
    seen.add(name)


def extract_archive(archive: Path, into: Path) -> dict:
    """Check every member and checksum of ``archive``, write its files under ``into``; return the manifest."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(f"{archive} is not a readable tar.gz archive: {exc}") from None
    seen: set[str] = set()
    with tar:
        try:
            infos = tar.getmembers()
            for info in infos:
                _check_member(info, seen)
            for info in infos:
                target = into / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise ArchiveError(f"{archive} is damaged: {exc}") from None
    missing = REQUIRED - seen
    if missing:
        raise ArchiveError(f"archive lacks {', '.join(sorted(missing))}")
    manifest = _read_manifest(into / MANIFEST)
    listed = set(manifest["members"])
    if listed != seen - {MANIFEST}:
        raise ArchiveError(f"archive members {sorted(seen - {MANIFEST})} do not match the manifest {sorted(listed)}")
    for name, entry in manifest["members"].items():
        if sha256_file(into / name) != entry.get("sha256"):
            raise ArchiveError(f"archive member {name!r} does not match its sha256 in the manifest (tampered?)")
    return manifest


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArchiveError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("members"), dict) or not isinstance(manifest.get("schema_version"), int):
        raise ArchiveError(f"manifest.json is not an alter0 backup manifest of format {FORMAT}")
    return manifest
