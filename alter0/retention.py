"""Retention: forget old task memory, delete old dated stage/audit folders and old process log files, and the
notification feed's and webhook delivery log's rows past the same age.

Messages are never deleted: task memory is a snapshot rebuilt on the task's next turn. Each job's last
run, last error and consecutive failures are kept in the maintenancestate table for /api/status. Every
worker's supervisor runs ``run_due`` on its reclaim tick, so retention runs on every queue engine.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .config import Config
from .database import write_tx
from .models import ChannelDelivery, MaintenanceState, NotifyCursor, NotifyEvent, Task, TaskMemory
from .paths import output_paths

log = logging.getLogger(__name__)

DAY = 86400.0
MEMORY_JOB = "memory_retention"
LOGS_JOB = "log_retention"
#: Seconds between two runs of each retention job (whichever worker finds it due runs it).
INTERVAL_SEC = 3600.0


@contextmanager
def tracked(name: str, now: float | None = None) -> Iterator[None]:
    """Record a maintenance run's outcome in maintenancestate (the error is re-raised)."""
    try:
        yield
    except Exception as exc:
        _record(name, now, f"{type(exc).__name__}: {exc}")
        raise
    _record(name, now, None)


def _record(name: str, now: float | None, error: str | None) -> None:
    with write_tx():
        row, _ = MaintenanceState.get_or_create(name=name)
        row.last_run = time.time() if now is None else now
        row.last_error = error
        row.consecutive_failures = row.consecutive_failures + 1 if error else 0
        row.save()


def maintenance_status() -> dict[str, dict]:
    """Each maintenance job's last_run, last_error and consecutive_failures."""
    return {r.name: {"last_run": r.last_run, "last_error": r.last_error,
                     "consecutive_failures": r.consecutive_failures} for r in MaintenanceState.select()}


def purge_memory(cfg: Config, now: float) -> dict[str, int]:
    """Delete memory of tasks closed, or (if enabled) open and idle, for longer than their retention."""
    closed_days = cfg["runtime.maintenance.task_memory_retention_days"]
    open_days = cfg["runtime.maintenance.task_memory_open_retention_days"]
    closed = Task.select(Task.id).where((Task.status == "closed") & (Task.closed_at < now - closed_days * DAY))
    with write_tx():
        counts = {"closed_task_memory": TaskMemory.delete().where(TaskMemory.task.in_(closed)).execute(),
                  "open_task_memory": 0}
        if open_days > 0:
            idle = Task.select(Task.id).where((Task.status == "open")
                                              & (Task.last_active_at < now - open_days * DAY))
            counts["open_task_memory"] = TaskMemory.delete().where(TaskMemory.task.in_(idle)).execute()
    return counts


def _day_of(name: str) -> float | None:
    try:
        return datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def purge_dated_dirs(root: Path, cutoff: float) -> int:
    """Delete root/<YYYY-MM-DD>/ folders whose whole day lies before ``cutoff``; return how many."""
    removed = 0
    for path in sorted(root.iterdir()) if root.is_dir() else ():
        start = _day_of(path.name)
        if start is not None and path.is_dir() and not path.is_symlink() and start + DAY <= cutoff:
            shutil.rmtree(path)
            removed += 1
    return removed


def purge_log_files(folder: Path, cutoff: float) -> int:
    """Delete process log files (``*.log``) last written before ``cutoff``; return how many."""
    removed = 0
    for path in folder.glob("*.log") if folder.is_dir() else ():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    return removed


def purge_logs(cfg: Config, now: float) -> dict[str, int]:
    """Delete stage logs, audit logs and process logs older than runtime.maintenance.log_retention_days."""
    cutoff = now - cfg["runtime.maintenance.log_retention_days"] * DAY
    paths = output_paths(cfg.output_dir)
    return {"orchestrator_dirs": purge_dated_dirs(paths["orchestrator"], cutoff),
            "audit_dirs": purge_dated_dirs(paths["audit"], cutoff),
            "log_files": purge_log_files(paths["logs"], cutoff), **purge_notifications(cutoff)}


def purge_notifications(cutoff: float) -> dict[str, int]:
    """Feed events older than ``cutoff`` that every active reader has passed, and webhook deliveries (sent or
    refused, never pending ones) queued before it."""
    readers = NotifyCursor.select(NotifyCursor.position).where(NotifyCursor.active, ~NotifyCursor.name.startswith(
        "feed.")).scalars()
    read = [int(p) for p in readers]
    unread_ok = (NotifyEvent.id <= min(read)) if read else True
    with write_tx():
        events = NotifyEvent.delete().where(NotifyEvent.created_at < cutoff, unread_ok).execute()
        sent = ChannelDelivery.delete().where(ChannelDelivery.platform.startswith("webhook:"),
                                              ChannelDelivery.state != "pending",
                                              ChannelDelivery.created_at < cutoff).execute()
    return {"notify_events": events, "webhook_deliveries": sent}


def run_retention(cfg: Config, now: float | None = None) -> dict[str, int]:
    """Run both retention jobs (each recorded in maintenancestate); raise the first error after both ran."""
    now = time.time() if now is None else now
    result: dict[str, int] = {}
    errors = []
    for name, job in ((MEMORY_JOB, purge_memory), (LOGS_JOB, purge_logs)):
        try:
            with tracked(name, now):
                result.update(job(cfg, now))
        except Exception as exc:
            log.warning("maintenance job %s failed: %s", name, exc)
            errors.append(exc)
    if errors:
        raise errors[0]
    log.info("retention: %s", result)
    return result


def run_due(cfg: Config, now: float | None = None) -> list[str]:
    """Run the retention jobs whose last run is older than INTERVAL_SEC; the names of those that ran."""
    now = time.time() if now is None else now
    last = {r.name: r.last_run or 0.0 for r in MaintenanceState.select(MaintenanceState.name,
                                                                        MaintenanceState.last_run)}
    ran = []
    for name, job in ((MEMORY_JOB, purge_memory), (LOGS_JOB, purge_logs)):
        if now - last.get(name, 0.0) < INTERVAL_SEC:
            continue
        try:
            with tracked(name, now):
                job(cfg, now)
            ran.append(name)
        except Exception as exc:  # recorded in maintenancestate; the next tick after the interval tries again
            log.warning("maintenance job %s failed: %s", name, exc)
    return ran
