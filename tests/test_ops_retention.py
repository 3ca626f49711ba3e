"""Retention deletes exactly what is older than its setting, and records each run for /api/status."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from alter0.models import MaintenanceState, Message, Task, TaskMemory
from alter0 import retention
from alter0.retention import DAY, maintenance_status, run_retention
from support.helpers import open_cfg

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc).timestamp()


def retention_cfg(tmp_path, closed=30, open_=10, logs=14):
    """An opened install keeping closed / open task memory and logs this many days."""
    return open_cfg(tmp_path, runtime={"maintenance": {
        "task_memory_retention_days": closed, "task_memory_open_retention_days": open_, "log_retention_days": logs}})


def task_with_memory(title: str, status: str, closed_at: float | None = None, last_active_at: float = NOW) -> int:
    task = Task.create(title=title, scope="user:u", user_id="u", status=status, closed_at=closed_at,
                       last_active_at=last_active_at)
    Message.create(task=task, role="user", content=title, user_id="u")
    TaskMemory.create(task=task, summary=title, turns=[{"role": "user", "content": title}])
    return task.id


def remembered() -> set[str]:
    return {m.task.title for m in TaskMemory.select()}


def test_task_memory_past_retention_is_deleted_and_nothing_else(tmp_path):
    retention_cfg(tmp_path)
    task_with_memory("closed-old", "closed", closed_at=NOW - 30 * DAY - 1)
    task_with_memory("closed-edge", "closed", closed_at=NOW - 30 * DAY)
    task_with_memory("closed-new", "closed", closed_at=NOW - 29 * DAY)
    task_with_memory("open-old", "open", last_active_at=NOW - 10 * DAY - 1)
    task_with_memory("open-edge", "open", last_active_at=NOW - 10 * DAY)
    task_with_memory("open-new", "open", last_active_at=NOW - DAY)
    result = run_retention(retention_cfg(tmp_path), now=NOW)
    assert result["closed_task_memory"] == 1 and result["open_task_memory"] == 1
    assert remembered() == {"closed-edge", "closed-new", "open-edge", "open-new"}
    assert Message.select().count() == 6 and Task.select().count() == 6  # messages are never deleted


def test_open_retention_zero_never_deletes_open_memory(tmp_path):
    cfg = retention_cfg(tmp_path, open_=0)
    task_with_memory("open-ancient", "open", last_active_at=NOW - 3650 * DAY)
    assert run_retention(cfg, now=NOW)["open_task_memory"] == 0
    assert remembered() == {"open-ancient"}


def day(offset: int) -> str:
    return datetime.fromtimestamp(NOW + offset * DAY, timezone.utc).strftime("%Y-%m-%d")


def test_dated_log_folders_and_process_logs_past_retention_are_deleted(tmp_path):
    cfg = retention_cfg(tmp_path, logs=14)
    out = cfg.output_dir
    for root in ("orchestrator", "audit"):
        for offset in (0, -13, -14, -15, -40):
            folder = out / root / day(offset)
            folder.mkdir(parents=True)
            (folder / "executor_route.jsonl").write_text("{}\n")
        (out / root / "not-a-date").mkdir()
        (out / root / "2020-01-02").write_text("")  # a file, not a day folder: kept
    logs = out / "logs"
    for name, age in (("worker-old.log", 14 * DAY + 1), ("worker-edge.log", 14 * DAY - 1), ("web-new.log", 0)):
        (logs / name).write_text("{}\n")
        os.utime(logs / name, (NOW - age, NOW - age))
    result = run_retention(cfg, now=NOW)
    # cutoff is 14 days before noon: the day 15 days back ended before it, the day 14 back did not
    for root in ("orchestrator", "audit"):
        assert sorted(p.name for p in (out / root).iterdir()) == sorted(
            [day(-14), day(-13), day(0), "not-a-date", "2020-01-02"])
    assert result["orchestrator_dirs"] == 2 and result["audit_dirs"] == 2
    assert sorted(p.name for p in logs.iterdir()) == ["web-new.log", "worker-edge.log"]
    assert result["log_files"] == 1


def test_each_run_is_recorded(tmp_path):
    cfg = retention_cfg(tmp_path)
    run_retention(cfg, now=NOW)
    status = maintenance_status()
    assert set(status) == {retention.MEMORY_JOB, retention.LOGS_JOB}
    assert all(s["last_run"] == NOW and s["last_error"] is None and s["consecutive_failures"] == 0
               for s in status.values())


def test_failures_are_counted_until_a_success(tmp_path, monkeypatch):
    cfg = retention_cfg(tmp_path)

    def broken(root, cutoff):
        raise PermissionError(f"cannot delete in {root}")

    monkeypatch.setattr(retention, "purge_dated_dirs", broken)
    for _ in range(2):
        with pytest.raises(PermissionError):
            run_retention(cfg, now=NOW)
    logs = MaintenanceState.get_by_id(retention.LOGS_JOB)
    assert logs.consecutive_failures == 2 and "PermissionError: cannot delete" in logs.last_error
    assert MaintenanceState.get_by_id(retention.MEMORY_JOB).consecutive_failures == 0
    monkeypatch.undo()
    run_retention(cfg, now=NOW + 60)
    logs = MaintenanceState.get_by_id(retention.LOGS_JOB)
    assert (logs.consecutive_failures, logs.last_error, logs.last_run) == (0, None, NOW + 60)
