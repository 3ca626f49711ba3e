"""Append-only JSONL files by date: stage logs and the command audit."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from .models import now
from .paths import dated_dir

log = logging.getLogger(__name__)

#: ``json.dumps(record, ensure_ascii=False, default=str)``, its encoder built once.
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode


def append_jsonl(path: Path | str, record: dict) -> None:
    """Append one JSON line with a single write (safe with several processes appending)."""
    line = (_ENCODE(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def append_dated(root: Path, when: float, name: str, record: dict) -> None:
    """``append_jsonl`` into root/<date>/name; a date directory removed while the process runs is made again."""
    try:
        append_jsonl(dated_dir(root, when) / name, record)
    except FileNotFoundError:
        append_jsonl(dated_dir(root, when, again=True) / name, record)


class _Failures:
    """Stage-log lines that could not be written in this process (counted; the first one is logged)."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()


STAGE_LOG_FAILURES = _Failures()
_stage_files: dict[tuple[Path, str, int], str] = {}  # (output dir, stage, UTC day number) -> the file's path


def stage_log(output_dir: Path, stage: str, /, **fields) -> None:
    """One line per stage run in orchestrator/<date>/executor_<stage>.jsonl. A line that cannot be written
    (read-only or full disk) never fails the stage: it is counted (``STAGE_LOG_FAILURES``) and the first
    failure of the process is logged."""
    t = now()
    record = {"ts": t, **fields, "stage": stage}
    key = (output_dir, stage, int(t // 86400))
    try:
        path = _stage_files.get(key)
        if path is None:  # a day's file of a stage: its path worked out once per process
            path = _stage_files[key] = str(dated_dir(output_dir / "orchestrator", t) / f"executor_{stage}.jsonl")
        try:
            append_jsonl(path, record)
        except FileNotFoundError:  # its directory was removed meanwhile: made again
            append_dated(output_dir / "orchestrator", t, f"executor_{stage}.jsonl", record)
    except OSError as exc:
        with STAGE_LOG_FAILURES.lock:
            STAGE_LOG_FAILURES.count += 1
            first = STAGE_LOG_FAILURES.count == 1
        if first:
            log.error("stage log not written (%s: %s); stages go on, later failures of this process are only "
                      "counted", exc.filename or output_dir, exc.strerror or exc)


def audit(output_dir: Path, **fields) -> None:
    """One line per admin command attempt in audit/<date>/command_permission.jsonl."""
    t = now()
    append_dated(output_dir / "audit", t, "command_permission.jsonl", {"ts": t, **fields})
