"""Structured JSON logs: one line per record in output/logs/<process>-<UTC day>-<pid>[.<part>].log.

Each process writes only its own files (name + pid), so several processes (gunicorn workers, the Huey
consumer, CLI commands) never share a file and never race on rotation. A process starts a new file
when the UTC day changes, when the file would pass runtime.maintenance.log_max_bytes (``.1``, ``.2``
parts), after a fork, and when retention deleted its file. Retention deletes files not written for
runtime.maintenance.log_retention_days. Read them together with ``cat output/logs/*.log | jq``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from .config import Config
from .paths import output_paths

#: LogRecord attributes (set with ``extra={...}``) copied into every JSON line that has them.
CONTEXT_FIELDS = ("session_id", "task_id", "job_id", "stage", "user_id", "channel_id")
#: Seconds between checks that the current file still exists (retention may delete it).
EXISTS_CHECK_SEC = 1.0


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON object: ts, level, logger, msg, process, pid, the context fields, exc."""

    def __init__(self, process_name: str):
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
               "process": self.process_name, "pid": record.process}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class DailySizeFileHandler(logging.Handler):
    """Appends to <folder>/<name>-<day>-<pid>[.<part>].log, moving to a new file by day, size or pid."""

    def __init__(self, folder: Path, name: str, max_bytes: int):
        super().__init__()
        self.folder, self.name_prefix, self.max_bytes = folder, name, max_bytes
        self.path: Path | None = None
        self._fh = None
        self._key: tuple[str, int] | None = None
        self._size = 0
        self._checked = 0.0

    def _file_for(self, day: str, pid: int, part: int) -> Path:
        return self.folder / f"{self.name_prefix}-{day}-{pid}{f'.{part}' if part else ''}.log"

    def _open(self, day: str, pid: int, need: int) -> None:
        self.close_file()
        self.folder.mkdir(parents=True, exist_ok=True)
        part = 0
        while True:
            path = self._file_for(day, pid, part)
            size = path.stat().st_size if path.exists() else 0
            if size == 0 or size + need <= self.max_bytes:
                break
            part += 1
        self._fh = open(path, "ab", buffering=0)  # O_APPEND, one write() per line
        self.path, self._key, self._size = path, (day, pid), size

    def _stale(self, day: str, pid: int, need: int) -> bool:
        if self._fh is None or self._key != (day, pid):
            return True
        if self._size > 0 and self._size + need > self.max_bytes:
            return True
        now = time.monotonic()
        if now - self._checked >= EXISTS_CHECK_SEC:
            self._checked = now
            return not self.path.exists()
        return False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8")
            day = time.strftime("%Y-%m-%d", time.gmtime(record.created))
            pid = os.getpid()
            if self._stale(day, pid, len(data)):
                self._open(day, pid, len(data))
            self._fh.write(data)
            self._size += len(data)
        except Exception:
            self.handleError(record)

    def close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        self.acquire()
        try:
            self.close_file()
        finally:
            self.release()
        super().close()


def setup_logging(cfg: Config, process_name: str, level: str = "INFO", console: bool = True) -> Path:
    """Send the root logger to JSON files under output/logs (and plain text to stderr from
    runtime.log.console_level up); return the folder."""
    folder = output_paths(cfg.output_dir)["logs"]
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_alter0", False)]:
        root.removeHandler(handler)
        handler.close()
    handler = DailySizeFileHandler(folder, process_name, cfg["runtime.maintenance.log_max_bytes"])
    handler.setFormatter(JsonFormatter(process_name))
    handlers: list[logging.Handler] = [handler]
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(cfg["runtime.log.console_level"].upper())  # the files keep everything at ``level``
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(stream)
    for h in handlers:
        h._alter0 = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(os.environ.get("ALTER0_LOG_LEVEL", level).upper())
    return folder
