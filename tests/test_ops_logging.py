"""JSON logs: context fields on every line that has them; new files by day, size, pid, and after deletion."""

from __future__ import annotations

import json
import logging
import time

import pytest

from alter0.logging_setup import CONTEXT_FIELDS, DailySizeFileHandler, JsonFormatter, setup_logging
from support.helpers import make_cfg


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield root
    for h in root.handlers[:]:
        if getattr(h, "_alter0", False):
            root.removeHandler(h)
            h.close()
    root.handlers[:], root.level = saved


def lines(folder) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.log")) for line in p.read_text().splitlines()]


def test_setup_logging_writes_json_lines_with_context(tmp_path, root_logger):
    cfg = make_cfg(tmp_path, runtime={"output_dir": str(tmp_path / "out")})
    folder = setup_logging(cfg, "worker", console=False)
    setup_logging(cfg, "worker", console=False)  # idempotent: one handler
    log = logging.getLogger("alter0.test")
    log.info("stage %s done", "route", extra={"job_id": 7, "task_id": 3, "stage": "route", "user_id": "u1",
                                              "channel_id": "c1", "session_id": "s9"})
    log.warning("no context")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed", extra={"job_id": 8})
    first, second, third = lines(folder)
    assert first["msg"] == "stage route done" and first["process"] == "worker" and first["level"] == "INFO"
    assert {k: first[k] for k in CONTEXT_FIELDS} == {"job_id": 7, "task_id": 3, "stage": "route", "user_id": "u1",
                                                     "channel_id": "c1", "session_id": "s9"}
    assert not set(CONTEXT_FIELDS) & set(second)
    assert third["job_id"] == 8 and "ValueError: bad" in third["exc"]
    assert first["ts"].endswith("Z")


def make_handler(tmp_path, max_bytes=1000) -> tuple[DailySizeFileHandler, logging.Logger]:
    handler = DailySizeFileHandler(tmp_path, "web", max_bytes)
    handler.setFormatter(JsonFormatter("web"))
    log = logging.Logger("isolated")
    log.addHandler(handler)
    return handler, log


def test_size_rotation_starts_numbered_parts(tmp_path):
    handler, log = make_handler(tmp_path, max_bytes=1000)
    for i in range(40):
        log.warning("message %03d %s", i, "x" * 40)
    handler.close()
    files = sorted(tmp_path.glob("web-*.log"))
    assert len(files) >= 3 and all(f.stat().st_size <= 1000 for f in files)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    names = {f.name for f in files}
    base = f"web-{day}-{handler.path.name.split('-')[-1].split('.')[0]}"
    assert {f"{base}.log", f"{base}.1.log", f"{base}.2.log"} <= names
    assert len(lines(tmp_path)) == 40


def test_new_file_on_a_new_day_and_after_retention_deleted_it(tmp_path, monkeypatch):
    handler, log = make_handler(tmp_path, max_bytes=10**6)
    record = log.makeRecord("isolated", logging.WARNING, __file__, 1, "yesterday", (), None)
    record.created -= 86400
    log.handle(record)
    log.warning("today")
    assert len(list(tmp_path.glob("web-*.log"))) == 2
    handler.path.unlink()  # retention removed today's file while the process runs
    monkeypatch.setattr("alter0.logging_setup.EXISTS_CHECK_SEC", 0.0)
    log.warning("after delete")
    handler.close()
    assert handler.path.exists() and "after delete" in handler.path.read_text()


def test_a_forked_child_writes_its_own_file(tmp_path, monkeypatch):
    handler, log = make_handler(tmp_path)
    log.warning("parent")
    parent_file = handler.path
    monkeypatch.setattr("alter0.logging_setup.os.getpid", lambda: 999999)
    log.warning("child")
    handler.close()
    assert handler.path != parent_file and "-999999" in handler.path.name
    assert "child" not in parent_file.read_text()
