"""What every channel (CLI, HTTP, console) does with jobs and tasks: validated, engine-agnostic."""

from __future__ import annotations

import time
from typing import Any

from peewee import IntegrityError, fn

from . import jobstate
from .database import write_tx
from .decide import scope_of
from .errors import Conflict, InputError, NotFound
from .models import Job, JobEvent, JobStatus as S, Message, Task, TaskMemory, TERMINAL, Worker, now
from .runtime import Runtime

ID_MAX = 200


def _text(value: Any, name: str, required: bool = True, limit: int = ID_MAX) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string")
    if required and not value.strip():
        raise InputError(f"{name} must not be empty")
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters")
    return value


def parse_task_id(value: Any) -> int | None:
    """A task id from user input (int or digit string), or InputError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isascii() \
            or not str(value).strip().isdigit():
        raise InputError(f"task_id must be a positive integer, got {value!r}")
    if len(str(value).strip()) > 19 or int(value) > 2**63 - 1:  # past the database's INTEGER range
        raise InputError(f"task_id {value} is out of range")
    return int(value)


def submit(rt: Runtime, content: Any, user_id: Any, channel_id: Any = None, task_id: Any = None,
           request_id: Any = None) -> tuple[Job, bool]:
    """Accept a message as a queued job (or return the job an idempotency key already made)."""
    content = _text(content, "content", limit=10**9)
    size = len(content.encode("utf-8"))
    if size > rt.cfg["task.max_content_bytes"]:
        raise InputError(f"content is {size} bytes; the limit is {rt.cfg['task.max_content_bytes']} bytes "
                         "(task.max_content_bytes)", code="too_large")
    user_id = _text(user_id, "user_id")
    channel_id = _text(channel_id, "channel_id", required=False)
    request_id = _text(request_id, "request_id", required=False) or None
    tid = parse_task_id(task_id)
    scope = scope_of(rt.cfg, user_id, channel_id)
    if tid is not None:
        task = Task.get_or_none(Task.id == tid)
        if task is None or task.scope != scope:
            raise NotFound(f"task {tid} does not exist")
    if request_id:
        existing = Job.get_or_none(Job.request_id == request_id)
        if existing is not None:
            return _same_request(existing, content, user_id), False
    try:
        with write_tx():  # one commit: the job, its first event and the record of its route message
            job = Job.create(content=content, user_id=user_id, channel_id=channel_id, scope=scope,
                             requested_task_id=tid, request_id=request_id, dispatched_at=now())
            jobstate.add_event(job.id, "submitted", None, {"task_id": tid})
    except IntegrityError:
        existing = Job.get_or_none(Job.request_id == request_id)
        if existing is None:
            raise
        return _same_request(existing, content, user_id), False
    rt.queue.enqueue("route", job.id, stamped=True)
    return job, True


def _same_request(job: Job, content: str, user_id: str) -> Job:
    if job.content != content or job.user_id != user_id:
        raise Conflict(f"request_id was already used for job {job.id} with different content")
    return job


def wait(job_id: int, timeout: float, poll: float = 0.02) -> Job:
    """Poll until the job ends or ``timeout`` passes; returns the job as last seen."""
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        job = jobstate.get_job(job_id)
        if job.state in TERMINAL or time.monotonic() >= deadline:
            return job
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)


def cancel(job_id: Any) -> Job:
    """Cancel a queued or running job (idempotent); Conflict for a job that already finished otherwise."""
    job = jobstate.get_job(job_id)
    for _ in range(20):
        if job.state == S.CANCELLED:
            return job
        if job.state in TERMINAL:
            raise Conflict(f"job {job.id} already finished ({job.status}); nothing to cancel")
        Job.update(cancel_requested=True).where(Job.id == job.id).execute()
        free = job.lease_owner is None or (job.lease_expires or 0) < now()
        if free and _cancel_unleased(job):
            return jobstate.get_job(job.id)
        if not free:
            return jobstate.get_job(job.id)  # the worker holding the lease sees the flag and kills the run
        job = jobstate.get_job(job.id)
    return job


def _cancel_unleased(job: Job) -> bool:
    t = now()
    q = Job.update(status=S.CANCELLED.value, finished_at=t, updated_at=t, error_kind="cancelled",
                   error="cancelled by request", parked=False).where(
        (Job.id == job.id) & (Job.status == job.status) &
        (Job.lease_owner.is_null() | (Job.lease_expires < t)))
    jobstate.check(job.state, S.CANCELLED)
    if q.execute() == 1:
        jobstate.add_event(job.id, "state", None, {"from": job.status, "to": "cancelled"})
        return True
    return False


def retry(rt: Runtime, job_id: Any) -> Job:
    """Run a failed, cancelled or timed-out job again from the stage it stopped in."""
    job = jobstate.get_job(job_id)
    if job.state not in jobstate.RETRYABLE_END:
        raise Conflict(f"job {job.id} is {job.status}; only failed, cancelled or timed_out jobs can be retried")
    dst, stage = (S.CLOSING, "close") if job.reply_message_id else (
        (S.GENERATING, "generate") if job.task_id else (S.QUEUED, "route"))
    if not jobstate.transition(job.id, job.state, dst, lease_owner=None, lease_expires=None):
        raise Conflict(f"job {job.id} changed state; try again")
    jobstate.add_event(job.id, "retry.requested", stage)
    rt.queue.enqueue(stage, job.id)
    return jobstate.get_job(job.id)


def job_view(job: Job, events: bool = False) -> dict[str, Any]:
    """A job as the CLI and the API show it."""
    reply = job.reply_message.content if job.reply_message_id else None
    view = {
        "job_id": job.id, "status": job.status, "stage": _stage(job), "task_id": job.task_id,
        "user_id": job.user_id, "channel_id": job.channel_id, "content": job.content,
        "decision": job.decision, "decision_source": job.decision_source,
        "route": {"confidence": job.route_confidence, "reason": job.route_reason, "version": job.route_version},
        "close": {"close": job.close_decision, "confidence": job.close_confidence, "reason": job.close_reason,
                  "version": job.close_version},
        "closed": bool(job.close_decision), "response": reply,
        "error": {"kind": job.error_kind, "message": job.error} if job.error_kind else None,
        "attempts": {"route": job.route_attempts, "generate": job.generate_attempts, "close": job.close_attempts},
        "usage": {"input_tokens": job.input_tokens, "output_tokens": job.output_tokens, "cost_usd": job.cost_usd},
        "timings": {"created_at": job.created_at, "routing_at": job.routing_at, "generating_at": job.generating_at,
                    "closing_at": job.closing_at, "finished_at": job.finished_at},
        "cancel_requested": job.cancel_requested, "request_id": job.request_id,
    }
    if events:
        view["events"] = [event_view(e) for e in JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id)]
    return view


def _stage(job: Job) -> str | None:
    return {"queued": "route", "routing": "route", "generating": "generate", "closing": "close"}.get(job.status)


def event_view(e: JobEvent) -> dict[str, Any]:
    return {"seq": e.id, "kind": e.kind, "stage": e.stage, "data": e.data, "at": e.created_at}


def list_jobs(status: str | None = None, task_id: Any = None, limit: Any = 50, cursor: Any = None,
              user_id: str | None = None) -> dict:
    """Jobs newest first (of ``user_id`` only if given), ``limit`` per page; ``cursor``: the previous page's last id."""
    q = Job.select() if user_id is None else Job.select().where(Job.user_id == user_id)
    if status:
        allowed = [s.value for s in S]
        if status not in allowed:
            raise InputError(f"status must be one of {', '.join(allowed)}")
        q = q.where(Job.status == status)
    if task_id is not None and task_id != "":
        q = q.where(Job.task == parse_task_id(task_id))
    limit = _int(limit, "limit", 1, 500)
    if cursor not in (None, ""):
        q = q.where(Job.id < _int(cursor, "cursor", 0, 2**62))
    jobs = list(q.order_by(Job.id.desc()).limit(limit))
    return {"jobs": [job_view(j) for j in jobs],
            "next_cursor": jobs[-1].id if len(jobs) == limit else None}


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer") from None
    if not lo <= n <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}")
    return n


def get_task(task_id: Any) -> Task:
    tid = parse_task_id(task_id)
    task = Task.get_or_none(Task.id == tid)
    if task is None:
        raise NotFound(f"task {tid} does not exist")
    return task


def task_view(task: Task, detail: bool = False) -> dict[str, Any]:
    """A task as the CLI and the API show it; ``detail`` adds messages, memory and decisions."""
    view = {"id": task.id, "title": task.title, "status": task.status, "scope": task.scope,
            "user_id": task.user_id, "channel_id": task.channel_id, "executor": task.executor,
            "session_id": task.session_id, "created_at": task.created_at, "updated_at": task.updated_at,
            "last_active_at": task.last_active_at, "closed_at": task.closed_at, "closed_by": task.closed_by,
            "close_reason": task.close_reason, "close_confidence": task.close_confidence,
            "usage": {"input_tokens": task.input_tokens, "output_tokens": task.output_tokens,
                      "cost_usd": round(task.cost_usd, 6)}}
    if detail:
        view["messages"] = [{"id": m.id, "role": m.role, "content": m.content, "user_id": m.user_id,
                             "at": m.created_at} for m in Message.select().where(Message.task == task.id)
                            .order_by(Message.id)]
        mem = TaskMemory.get_or_none(TaskMemory.task == task.id)
        view["memory"] = {"summary": mem.summary, "turns": mem.turns, "turn_count": mem.turn_count,
                          "participants": mem.participants} if mem else None
        view["decisions"] = [{"job_id": j.id, "status": j.status, "decision": j.decision,
                              "source": j.decision_source, "route_confidence": j.route_confidence,
                              "route_reason": j.route_reason, "close": j.close_decision,
                              "close_confidence": j.close_confidence, "close_reason": j.close_reason}
                             for j in Job.select().where(Job.task == task.id).order_by(Job.id)]
    return view


def list_tasks(status: str = "open", scope: str | None = None, limit: int = 200,
               user_id: str | None = None) -> list[Task]:
    if status not in ("open", "closed", "all"):
        raise InputError("status must be open, closed or all")
    q = Task.select()
    if user_id is not None:
        q = q.where((Task.user_id == user_id) | (Task.scope == f"user:{user_id}"))
    if status != "all":
        q = q.where(Task.status == status)
    if scope:
        q = q.where(Task.scope == scope)
    return list(q.order_by(Task.last_active_at.desc()).limit(limit))


def close_task(task_id: Any, reason: str = "closed by user", closed_by: str = "manual") -> Task:
    """Close a task (the same record the closer writes, with closed_by manual)."""
    task = get_task(task_id)
    if task.status == "closed":
        return task
    Task.update(status="closed", closed_at=now(), closed_by=closed_by, close_reason=reason, close_confidence=1.0,
                updated_at=now()).where(Task.id == task.id).execute()
    return get_task(task.id)


def reopen_task(task_id: Any) -> Task:
    task = get_task(task_id)
    Task.update(status="open", closed_at=None, closed_by=None, close_reason=None, close_confidence=None,
                updated_at=now(), last_active_at=now()).where(Task.id == task.id).execute()
    return get_task(task.id)


def live_workers(max_age: float = 10.0) -> list[Worker]:
    """Workers that sent a heartbeat within ``max_age`` seconds and have not stopped."""
    return list(Worker.select().where((Worker.last_beat > now() - max_age) & (Worker.state != "stopped")))


def backlog() -> dict[str, int]:
    """Jobs waiting or running per state."""
    counts = {s: 0 for s in ("queued", "routing", "generating", "closing")}
    for status, n in Job.select(Job.status, fn.COUNT(Job.id)).where(Job.status.in_(list(counts))).group_by(
            Job.status).tuples():
        counts[status] = n
    return counts
get_job = jobstate.get_job
