"""Prometheus text exposition of the job table: jobs by state, stage latency histograms, retries, failures."""

from __future__ import annotations

from peewee import Case, fn

from alter0 import liveness, views
from alter0.database import sizes
from alter0.models import Job, JobEvent, JobStatus
from alter0.ops import stats

#: Upper bounds (seconds) of the stage latency histogram buckets.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FAILED = [JobStatus.FAILED.value, JobStatus.TIMED_OUT.value, JobStatus.CANCELLED.value]


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, value: float, **labels: object) -> str:
    body = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value:g}" if body else f"{name} {value:g}"


def _family(name: str, kind: str, help_: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]


def jobs_by_state() -> list[str]:
    counts = {s.value: 0 for s in JobStatus}
    for status, n in Job.select(Job.status, fn.COUNT(Job.id)).group_by(Job.status).tuples():
        counts[status] = n
    return [_sample("alter0_jobs", n, state=s) for s, n in counts.items()]


def latency_histograms() -> list[str]:
    """One histogram per phase (queue_wait, routing, generation, closing, total) over all jobs that went through it."""
    lines = []
    for phase, (start, end) in stats.PHASES.items():
        a, b = getattr(Job, start), getattr(Job, end)
        duration = b - a
        cols = [fn.SUM(Case(None, [(duration <= le, 1)], 0)) for le in BUCKETS]
        row = Job.select(fn.COUNT(Job.id), fn.SUM(duration), *cols).where(
            a.is_null(False) & b.is_null(False)).tuples().first()
        count, total, *cum = row if row else (0, 0, *[0] * len(BUCKETS))
        for le, n in zip(BUCKETS, cum):
            lines.append(_sample("alter0_stage_duration_seconds_bucket", n or 0, phase=phase, le=f"{le:g}"))
        lines += [_sample("alter0_stage_duration_seconds_bucket", count or 0, phase=phase, le="+Inf"),
                  _sample("alter0_stage_duration_seconds_sum", round(total or 0.0, 6), phase=phase),
                  _sample("alter0_stage_duration_seconds_count", count or 0, phase=phase)]
    return lines


def retries() -> list[str]:
    q = (JobEvent.select(JobEvent.stage, fn.COUNT(JobEvent.id)).where(JobEvent.kind == "retry")
         .group_by(JobEvent.stage).tuples())
    found = dict(q)
    return [_sample("alter0_retries_total", found.get(s, 0), stage=s) for s in ("route", "generate", "close")]


def failures() -> list[str]:
    q = (Job.select(Job.status, Job.error_kind, fn.COUNT(Job.id)).where(Job.status.in_(FAILED))
         .group_by(Job.status, Job.error_kind).tuples())
    return [_sample("alter0_job_failures", n, state=s, kind=k or "unknown") for s, k, n in q]


def render(cfg) -> str:
    """The whole exposition (text format 0.0.4)."""
    live = len(liveness.live_workers(cfg))
    lines = (
        _family("alter0_jobs", "gauge", "Jobs by state.", jobs_by_state())
        + _family("alter0_stage_duration_seconds", "histogram",
                  "Seconds jobs spent per phase (queue_wait, routing, generation, closing, total).",
                  latency_histograms())
        + _family("alter0_retries_total", "counter", "Stage retries after a retryable error.", retries())
        + _family("alter0_job_failures", "gauge", "Jobs that ended failed, timed out or cancelled, by error kind.",
                  failures())
        + _family("alter0_queue_backlog", "gauge", "Unfinished jobs by the stage they wait for or run.",
                  [_sample("alter0_queue_backlog", n, stage=s) for s, n in views.backlog_by_stage().items()])
        + _family("alter0_workers", "gauge", "Live workers (heartbeat within runtime.queue.worker_stale_sec).",
                  [_sample("alter0_workers", live)])
        + _family("alter0_database_bytes", "gauge", "Bytes of the database (file=db: the SQLite file or the "
                  "PostgreSQL database; file=wal: SQLite's write-ahead log).",
                  [_sample("alter0_database_bytes", n, file=k.split("_")[0]) for k, n in sizes(cfg).items()])
    )
    return "\n".join(lines) + "\n"
