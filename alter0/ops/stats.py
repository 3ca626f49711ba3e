"""Job statistics over a time window: totals, failures, backlog per stage and p50/p95 stage durations."""

from __future__ import annotations

import time


from ..models import Job, JobStatus
from ..views import backlog_by_stage

#: Duration name -> (start column, end column) of the Job row.
PHASES = {
    "queue_wait": ("created_at", "routing_at"),
    "routing": ("routing_at", "generating_at"),
    "generation": ("generating_at", "closing_at"),
    "closing": ("closing_at", "finished_at"),
    "total": ("created_at", "finished_at"),
}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def stats(window_sec: float = 86400, now: float | None = None) -> dict:
    """Counts by status, failures, timeouts, backlog per stage and duration percentiles of jobs in the window."""
    now = time.time() if now is None else now
    since = now - window_sec
    columns = sorted({c for pair in PHASES.values() for c in pair})
    rows = list(Job.select(Job.status, *(getattr(Job, c) for c in columns))
                .where(Job.created_at >= since).dicts())
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    durations = {}
    for name, (start, end) in PHASES.items():
        values = [r[end] - r[start] for r in rows if r[start] is not None and r[end] is not None]
        durations[name] = {"count": len(values), "p50": _round(percentile(values, 50)),
                           "p95": _round(percentile(values, 95))}
    return {"window_sec": window_sec, "since": since, "total": len(rows), "by_status": by_status,
            "done": by_status.get(JobStatus.DONE.value, 0), "failures": by_status.get(JobStatus.FAILED.value, 0),
            "timeouts": by_status.get(JobStatus.TIMED_OUT.value, 0),
            "cancelled": by_status.get(JobStatus.CANCELLED.value, 0),
            "backlog": backlog_by_stage(), "durations_sec": durations}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def format_stats(d: dict) -> str:
    """Plain-text rendering of ``stats()`` for the CLI and /task stats."""
    hours = d["window_sec"] / 3600
    lines = [f"jobs in the last {hours:g} h: {d['total']} (done {d['done']}, failed {d['failures']}, "
             f"timed out {d['timeouts']}, cancelled {d['cancelled']})",
             "backlog: " + ", ".join(f"{stage} {n}" for stage, n in d["backlog"].items()),
             f"{'duration':<12}{'count':>8}{'p50 s':>10}{'p95 s':>10}"]
    for name, v in d["durations_sec"].items():
        lines.append(f"{name:<12}{v['count']:>8}{_cell(v['p50'])}{_cell(v['p95'])}")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.3f}"
