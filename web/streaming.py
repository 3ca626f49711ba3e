"""Follow a job while it runs by polling its JobEvent rows by seq: NDJSON progress + reply chunks, or SSE."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from alter0 import views
from alter0.models import Job, JobEvent, TERMINAL

#: Seconds between two database polls of a followed job, at most.
POLL_MAX_SEC = 0.25
#: Seconds of silence after which a stream sends a heartbeat line (keeps proxies open, notices disconnects).
HEARTBEAT_SEC = 10.0
CHUNK_DEFAULT, CHUNK_MAX = 1200, 4000


def line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def sse(event: str, obj: dict, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(obj, ensure_ascii=False, default=str)}\n\n"


def follow(job_id: int, after: int, limit: float) -> Iterator[tuple[str, Any]]:
    """Yield ("event", JobEvent) as they appear, ("heartbeat", None) when quiet, then ("end"|"timeout", Job)."""
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    delay = 0.02
    while True:
        job = views.get_job(job_id)  # read the state first: events written before it ended are all seen below
        events = views.new_events(job_id, after)
        for e in events:
            after = e.id
            yield "event", e
        if events:
            quiet_since, delay = time.monotonic(), 0.02
        if job.state in TERMINAL and not events:
            yield "end", job
            return
        if not events and time.monotonic() >= deadline:
            yield "timeout", job
            return
        if time.monotonic() - quiet_since >= HEARTBEAT_SEC:
            quiet_since = time.monotonic()
            yield "heartbeat", None
        if not events:
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_SEC)


def progress(e: JobEvent) -> dict | None:
    """A timeline entry as a stream line for clients of POST /api/message?stream=1."""
    data = e.data or {}
    base = {"seq": e.id, "job_id": e.job_id, "stage": e.stage}
    if e.kind == "submitted":
        return {"type": "submitted", **base}
    if e.kind == "state":
        return {"type": "state", **base, "from": data.get("from"), "to": data.get("to")}
    if e.kind == "stage.started":
        return {"type": "stage", **base, "status": "started", **{k: v for k, v in data.items() if k != "type"}}
    if e.kind == "stage.finished" and e.stage == "route":
        return {"type": "routed", **base, "task_id": data.get("task_id"), "decision": data.get("decision"),
                "source": data.get("source"), "confidence": data.get("confidence"), "reason": data.get("reason")}
    if e.kind == "stage.finished":
        return {"type": "stage", **base, "status": "finished", "data": data}
    if e.kind in ("retry", "retry.requested"):
        return {"type": "retry", **base, **data}
    if e.kind == "error":
        return {"type": "error", **base, "kind": data.get("kind"), "message": data.get("message")}
    return {"type": "progress", **base, "kind": e.kind, "data": data}


def chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def message_stream(job_id: int, chunk_size: int, limit: float) -> Iterator[str]:
    """NDJSON of POST /api/message?stream=1: progress lines, then the reply's chunks, then ``done``."""
    for kind, item in follow(job_id, 0, limit):
        if kind == "event":
            entry = progress(item)
            if entry:
                yield line(entry)
        elif kind == "heartbeat":
            yield line({"type": "heartbeat", "job_id": job_id})
        elif kind == "timeout":
            yield line({"type": "timeout", "job_id": job_id, "status": item.status,
                        "message": f"still {item.status}; follow it with GET /api/jobs/{job_id}/events"})
        else:
            yield from _finish(item, chunk_size)


def _finish(job: Job, chunk_size: int) -> Iterator[str]:
    view = views.job_view(job)
    parts = chunks(view["response"] or "", chunk_size) if job.status == "done" else []
    for i, part in enumerate(parts):
        yield line({"type": "chunk", "index": i, "total": len(parts), "chunk": part})
    yield line({"type": "done", "job_id": job.id, "task_id": job.task_id, "decision": job.decision,
                "closed": view["closed"], "total": len(parts), "status": job.status, "error": view["error"]})


def event_stream(job_id: int, after: int, limit: float, as_sse: bool) -> Iterator[str]:
    """GET /api/jobs/<id>/events: the raw timeline from a cursor, until the job ends (or ``limit`` passes)."""
    for kind, item in follow(job_id, after, limit):
        if kind == "event":
            view = dict(views.event_view(item), job_id=job_id)
            yield sse(item.kind, view, item.id) if as_sse else line(view)
        elif kind == "heartbeat":
            yield ": heartbeat\n\n" if as_sse else line({"kind": "heartbeat", "job_id": job_id})
        else:
            end = {"kind": kind, "job_id": job_id, "status": item.status}
            yield sse(kind, end) if as_sse else line(end)
