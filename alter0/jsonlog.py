"""Append-only JSONL files by date: stage logs and the command audit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .models import now
from .paths import dated_dir


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line with a single write (safe with several processes appending)."""
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def stage_log(output_dir: Path, stage: str, /, **fields) -> None:
    """One line per stage run in orchestrator/<date>/executor_<stage>.jsonl."""
    t = now()
    append_jsonl(dated_dir(output_dir / "orchestrator", t) / f"executor_{stage}.jsonl",
                 {"ts": t, **fields, "stage": stage})


def audit(output_dir: Path, **fields) -> None:
    """One line per admin command attempt in audit/<date>/command_permission.jsonl."""
    t = now()
    append_jsonl(dated_dir(output_dir / "audit", t) / "command_permission.jsonl", {"ts": t, **fields})
