"""The notification feed: job outcomes, closed tasks and workers going down or up become ``NotifyEvent`` rows,
each fact once (a unique key), found by scanning from persisted cursors; subscribers read it from their own
cursor, turning events into outbox rows in the same transaction that moves the cursor (``fan_out``)."""

from __future__ import annotations

from typing import Callable, Iterable

from .. import liveness
from ..channels import outbox
from ..channels.base import Outgoing
from ..clock import db_now
from ..config import Config
from ..database import write_tx
from ..models import Job, NotifyCursor, NotifyEvent, Task, now

#: Job outcomes the feed reports (a cancel is the user's own act: not reported).
JOB_EVENTS = {"done": "job.done", "failed": "job.failed", "timed_out": "job.timed_out"}
#: Seconds looked back behind a producer's cursor: a row committed late (a slow transaction, another host's
#: clock) is still found; the unique key keeps it from being reported twice.
LOOKBACK_SEC = 120.0
BATCH = 500
TEXT_CHARS = 1000


def position(name: str) -> float | None:
    row = NotifyCursor.get_or_none(NotifyCursor.name == name)
    return None if row is None else row.position


def set_position(name: str, value: float, active: bool = True) -> None:
    """Save a cursor (inside the caller's transaction when there is one)."""
    (NotifyCursor.insert(name=name, position=value, active=active, updated_at=now())
     .on_conflict(conflict_target=[NotifyCursor.name],
                  update={NotifyCursor.position: value, NotifyCursor.active: active,
                          NotifyCursor.updated_at: now()}).execute())


def start_time() -> float:
    """When the feed began: facts older than this are history, not news (set on the first run)."""
    start = position("feed.start")
    if start is None:
        start = db_now()
        with write_tx():
            NotifyCursor.insert(name="feed.start", position=start).on_conflict_ignore().execute()
        start = position("feed.start")
    return start


def head() -> int:
    """The id of the newest event (0 when the feed is empty)."""
    return NotifyEvent.select(NotifyEvent.id).order_by(NotifyEvent.id.desc()).limit(1).scalar() or 0


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def job_summary(job: Job) -> dict:
    """What subscribers are told about a job (texts cut to TEXT_CHARS)."""
    reply = job.reply_message.content if job.reply_message_id and job.reply_message else None
    return {"id": job.id, "status": job.status, "task_id": job.task_id, "user_id": job.user_id,
            "channel_id": job.channel_id, "content": _cut(job.content), "reply": _cut(reply),
            "error_kind": job.error_kind, "error": _cut(job.error), "created_at": job.created_at,
            "finished_at": job.finished_at,
            "duration_sec": round(job.finished_at - job.created_at, 3) if job.finished_at else None}


def task_summary(task: Task | None) -> dict | None:
    if task is None:
        return None
    return {"id": task.id, "title": task.title, "status": task.status, "closed_by": task.closed_by,
            "close_reason": _cut(task.close_reason), "closed_at": task.closed_at}


def _insert(items: list[tuple[str, str, str, dict]], cursor: str | None = None, cursor_value: float = 0) -> int:
    """Insert (key, kind, subject, payload) events not yet in the feed and move ``cursor``, in one transaction."""
    n = 0
    with write_tx():
        for key, kind, subject, payload in items:
            n += (NotifyEvent.insert(key=key, kind=kind, subject=subject, payload=payload, created_at=now())
                  .on_conflict_ignore().as_rowcount().execute())
        if cursor is not None:
            set_position(cursor, cursor_value)
    return n


def _new_keys(keys: Iterable[str]) -> set[str]:
    keys = set(keys)
    if not keys:
        return set()
    return keys - set(NotifyEvent.select(NotifyEvent.key).where(NotifyEvent.key.in_(list(keys))).scalars())


def _scan(cursor: str, field, query, start: float, lookback: bool) -> tuple[list, float | None]:
    """Rows of ``query`` whose ``field`` (a time) is past the cursor (oldest first, at most BATCH), plus, when
    ``lookback``, those of the LOOKBACK_SEC before it (a late commit); and the cursor's next value."""
    cur = max(start, position(cursor) or start)
    rows = list(query.where(field > cur).order_by(field).limit(BATCH))
    if lookback:
        rows += list(query.where(field >= max(start, cur - LOOKBACK_SEC), field <= cur))
    ahead = [getattr(r, field.name) for r in rows if getattr(r, field.name) > cur]
    return rows, max(ahead) if ahead else None


def produce_jobs(start: float, lookback: bool) -> int:
    """Jobs that ended done, failed or timed out since the cursor (each ending once: retried jobs end again)."""
    jobs, moved = _scan("feed.jobs", Job.finished_at, Job.select().where(Job.status.in_(list(JOB_EVENTS))),
                        start, lookback)
    keyed = {f"{JOB_EVENTS[j.status]}:{j.id}:{int(j.finished_at * 1000)}": j for j in jobs}
    fresh = _new_keys(keyed)
    if not fresh:
        return _insert([], "feed.jobs", moved) if moved else 0
    tasks = {t.id: t for t in Task.select().where(Task.id.in_([j.task_id for j in jobs if j.task_id]))}
    items = [(k, JOB_EVENTS[j.status], f"job:{j.id}", {"job": job_summary(j), "task": task_summary(tasks.get(j.task_id))})
             for k, j in sorted(keyed.items(), key=lambda kv: kv[1].finished_at) if k in fresh]
    return _insert(items, "feed.jobs" if moved else None, moved or 0)


def produce_tasks(start: float, lookback: bool) -> int:
    """Tasks closed since the cursor (by the closer or a person)."""
    tasks, moved = _scan("feed.tasks", Task.closed_at, Task.select().where(Task.status == "closed"), start, lookback)
    keyed = {f"task.closed:{t.id}:{int(t.closed_at * 1000)}": t for t in tasks}
    fresh = _new_keys(keyed)
    if not fresh:
        return _insert([], "feed.tasks", moved) if moved else 0
    items = [(k, "task.closed", f"task:{t.id}", {"task": task_summary(t)})
             for k, t in sorted(keyed.items(), key=lambda kv: kv[1].closed_at) if k in fresh]
    return _insert(items, "feed.tasks" if moved else None, moved or 0)


def _worker_view(row: dict) -> dict:
    return {"id": row["id"], "host": row["host"], "pid": row["pid"], "health": row["health"],
            "started_at": row["started_at"], "last_beat": row["last_beat"], "beat_age_sec": row["beat_age_sec"]}


def produce_workers(cfg: Config, start: float) -> int:
    """Workers that stopped being alive by the liveness rule (worker.down, with why: dead, stale, stopped), and
    workers alive again after a worker.down (the same one beating again, or a new one replacing it)."""
    rows = liveness.with_health(liveness.worker_rows(include_stopped_since=start), liveness.stale_after(cfg))
    if not rows:
        return 0
    subjects = [f"worker:{r['id']}" for r in rows]
    history: dict[str, list[str]] = {}
    for subject, kind in (NotifyEvent.select(NotifyEvent.subject, NotifyEvent.kind)
                          .where(NotifyEvent.subject.in_(subjects)).order_by(NotifyEvent.id).tuples()):
        history.setdefault(subject, []).append(kind)
    latest = (NotifyEvent.select(NotifyEvent.kind, NotifyEvent.subject, NotifyEvent.created_at)
              .where(NotifyEvent.kind.in_(["worker.down", "worker.up"])).order_by(NotifyEvent.id.desc()).first())
    last_any = latest.kind if latest else None
    items = []
    for r in sorted(rows, key=lambda r: r["started_at"]):
        subject = f"worker:{r['id']}"
        seen = history.get(subject, [])
        last = seen[-1] if seen else None
        if r["alive"]:
            replaces = None
            if last is None and last_any == "worker.down" and r["started_at"] >= latest.created_at:
                replaces = latest.subject.split(":", 1)[1]
            if last == "worker.down" or replaces:
                payload = {"worker": _worker_view(r), "replaces": replaces}
                items.append((f"worker.up:{r['id']}:{seen.count('worker.up')}", "worker.up", subject, payload))
                last_any = "worker.up"
        elif last != "worker.down" and (last is not None or r["last_beat"] >= start):
            payload = {"worker": _worker_view(r), "reason": r["health"],
                       "alive_workers": sum(1 for x in rows if x["alive"])}
            items.append((f"worker.down:{r['id']}:{seen.count('worker.down')}", "worker.down", subject, payload))
            last_any, latest = "worker.down", NotifyEvent(kind="worker.down", subject=subject, created_at=now())
    return _insert(items) if items else 0


def produce(cfg: Config, lookback: bool = True, workers: bool = True) -> int:
    """One scan of the producers (``lookback``: also behind the cursors, for late commits; ``workers``: the
    worker table too); how many events were added."""
    start = start_time()
    return (produce_jobs(start, lookback) + produce_tasks(start, lookback) +
            (produce_workers(cfg, start) if workers else 0))


def fan_out(name: str, platform: str, make: Callable[[NotifyEvent], list[Outgoing]], limit: int = 200) -> int:
    """Queue what subscriber ``name`` makes of the events after its cursor, on ``platform``'s outbox, moving the
    cursor in the same transaction (a crash repeats nothing and loses nothing). A new subscriber starts at the
    head: it is told of what happens from now on. Returns how many deliveries were queued."""
    pos = position(name)
    if pos is None:
        set_position(name, head())
        return 0
    events = list(NotifyEvent.select().where(NotifyEvent.id > int(pos)).order_by(NotifyEvent.id).limit(limit))
    if not events:
        return 0
    n = 0
    with write_tx():
        for event in events:
            n += outbox.enqueue(platform, make(event))
        set_position(name, events[-1].id)
    return n
