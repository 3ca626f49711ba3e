"""The /api/status snapshot: gateway, backlog, workers, in-flight jobs, executors, maintenance, chat channels,
audit tail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Any


from alter0 import liveness, views
from alter0.channels import state as channel_state
from alter0.models import Job
from alter0.notify import notifier
from alter0.principals import tokens_configured
from alter0.retention import maintenance_status
from alter0.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
STARTED_AT = time.time()
#: Seconds the executors' availability is cached (the openai check opens a TCP connection).
EXECUTOR_CACHE_SEC = 30.0
#: Stopped workers are listed this long after their last heartbeat.
RECENT_WORKER_SEC = 3600.0
AUDIT_TAIL = 20
_executors: dict[str, Any] = {"at": 0.0, "value": None}
_executors_lock = threading.Lock()


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """ALTER0_GIT_REVISION, else the checkout's HEAD, else None."""
    if os.environ.get("ALTER0_GIT_REVISION"):
        return os.environ["ALTER0_GIT_REVISION"]
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def executors(rt: Runtime) -> dict[str, Any]:
    """Every executor's availability, plus the configured one resolved (cached for EXECUTOR_CACHE_SEC)."""
    with _executors_lock:
        if _executors["value"] is None or time.monotonic() - _executors["at"] > EXECUTOR_CACHE_SEC:
            from alter0.executors.registry import available_executors
            try:
                found = {n: {"available": ok, "detail": d} for n, (ok, d) in available_executors(rt.cfg).items()}
            except Exception as exc:  # a broken adapter must not take the status page down
                found = {"error": {"available": False, "detail": str(exc)}}
            try:
                configured = rt.executor_name()
            except Exception as exc:
                configured = f"unavailable: {getattr(exc, 'message', exc)}"
            _executors.update(at=time.monotonic(), value={"configured": configured, "available": found})
        return _executors["value"]


def workers(cfg) -> list[dict]:
    rows = sorted(liveness.worker_rows(include_stopped_since=time.time() - RECENT_WORKER_SEC),
                  key=lambda r: r["last_beat"], reverse=True)
    return [dict(r, last_beat_age_sec=r["beat_age_sec"])
            for r in liveness.with_health(rows, liveness.stale_after(cfg))]


def in_flight(limit: int = 50) -> list[dict]:
    t = time.time()
    running = Job.select().where(Job.status.in_(["routing", "generating", "closing"])).order_by(Job.id).limit(limit)
    return [{"job_id": j.id, "status": j.status, "task_id": j.task_id, "worker": j.lease_owner,
             "stage_age_sec": round(t - (j.stage_started_at or j.updated_at), 1),
             "age_sec": round(t - j.created_at, 1), "cancel_requested": j.cancel_requested} for j in running]


def audit_tail(output_dir: Path, n: int = AUDIT_TAIL) -> list[dict]:
    """The last ``n`` audit lines (audit/<date>/command_permission.jsonl, newest first)."""
    lines: deque[str] = deque(maxlen=n)
    days = sorted((output_dir / "audit").glob("*/command_permission.jsonl"))[-3:]
    for path in days:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines.extend(fh)
    out = []
    for raw in lines:
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out[::-1]


def queue_store_backlog(rt: Runtime) -> int | None:
    try:
        return rt.queue.backlog()
    except Exception:
        return None


def snapshot(rt: Runtime, admin: bool = False) -> dict[str, Any]:
    """Everything an operator looks at first, in one document (the audit tail for admins only)."""
    return {
        "time": time.time(),
        "gateway": {"host": socket.gethostname(), "pid": os.getpid(), "started_at": STARTED_AT,
                    "uptime_sec": round(time.time() - STARTED_AT, 1), "output_dir": str(rt.output_dir),
                    "queue_backend": rt.cfg["runtime.queue.backend"], "auth": bool(rt.cfg["security.api_token"]),
                    "tokens_required": tokens_configured(rt.cfg["security.api_token"])},
        "backlog": {"by_stage": views.backlog_by_stage(), "by_state": views.backlog(),
                    "queue_store": queue_store_backlog(rt)},
        "workers": workers(rt.cfg),
        "in_flight": in_flight(),
        "executors": executors(rt),
        "maintenance": maintenance_status(),
        "channels": channel_state.snapshot(rt.cfg),
        "notify": notifier.status(rt.cfg),
        "audit_tail": audit_tail(rt.output_dir) if admin else None,
        "git_revision": git_revision(),
    }
