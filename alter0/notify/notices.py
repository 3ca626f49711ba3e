"""One-line chat texts of notification feed events ("job 12 done in task 3 'title' — ...", failures with their
error line, workers down or up), shared by every chat channel's ``Channel.notification``."""

from __future__ import annotations


def line(kind: str, payload: dict) -> str:
    """One line for a feed event: "job 12 done in task 3 'title'", failures with their error line."""
    job, task, worker = payload.get("job") or {}, payload.get("task") or {}, payload.get("worker") or {}
    where = f" in task {task['id']} '{task['title']}'" if task else ""
    if kind.startswith("job."):
        text = f"job {job.get('id')} {kind.split('.', 1)[1].replace('_', ' ')}{where}"
        if kind != "job.done" and job.get("error"):
            text += ": " + job["error"].strip().splitlines()[0][:300]
        elif kind == "job.done" and (job.get("reply") or "").strip():
            text += " — " + job["reply"].strip().splitlines()[0][:120]
        return text
    if kind == "task.closed":
        return f"task {task.get('id')} '{task.get('title')}' closed ({task.get('closed_by') or 'auto'})"
    if kind == "worker.down":
        return (f"worker {worker.get('host')}:{worker.get('pid')} is down ({payload.get('reason')}); "
                f"{payload.get('alive_workers', 0)} worker(s) alive")
    if kind == "worker.up":
        return f"worker {worker.get('host')}:{worker.get('pid')} is up"
    return kind


def for_chat(event, channel_id: str) -> str | None:
    """The notice a chat's notification target gets (``channel_id`` as jobs record it, e.g. ``telegram:42``); None
    for a job started from that chat: it is answered there already."""
    job = event.payload.get("job") or {}
    if job and job.get("channel_id") == channel_id:
        return None
    return line(event.kind, event.payload)
