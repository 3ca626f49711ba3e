"""What every channel (CLI, HTTP, console) does with jobs and tasks: submit, wait, cancel, retry, move, close,
reopen."""

from __future__ import annotations

import time
from typing import Any

from peewee import IntegrityError

from . import busy, faults, inputs, jobstate, memory, taskstate, threads, workspaces
from .audit import record
from .clock import db_now
from .database import write_tx
from .taskstate import scope_of
from .errors import Conflict, InputError, NotFound
from .models import Job, JobStatus as S, Message, Task, TERMINAL
from .runtime import Runtime, get_runtime
from .views import get_job, get_task


def submit(rt: Runtime, content: Any, user_id: Any, channel_id: Any = None, task_id: Any = None,
           request_id: Any = None, busy_policy: Any = None, thread_key: Any = None) -> tuple[Job, bool]:
    """Accept a message as a queued job (or return the job an idempotency key already made); a message for a
    busy task follows ``busy_policy`` (else the task's, else task.busy_policy): see alter0.busy; ``thread_key``
    names the chat thread it came from (a thread bound to a task sends it there without the router)."""
    content = inputs.text(content, "content", limit=10**9)
    size = len(content.encode("utf-8"))
    if size > rt.cfg["task.max_content_bytes"]:
        raise InputError(f"content is {size} bytes; the limit is {rt.cfg['task.max_content_bytes']} bytes "
                         "(task.max_content_bytes)", code="too_large")
    user_id = inputs.text(user_id, "user_id")
    channel_id = inputs.text(channel_id, "channel_id", required=False)
    request_id = inputs.text(request_id, "request_id", required=False) or None
    thread_key = inputs.text(thread_key, "thread_key", required=False) or None
    tid = inputs.parse_id(task_id)
    scope = scope_of(rt.cfg, user_id, channel_id)
    if tid is not None:
        task = Task.get_or_none(Task.id == tid)
        if task is None or task.scope != scope:
            raise NotFound(f"task {tid} does not exist")
    if request_id:
        existing = Job.get_or_none(Job.request_id == request_id)
        if existing is not None:
            return _same_request(existing, content, user_id), False
    collected = busy.before_submit(rt.cfg, user_id, task if tid is not None else None, busy_policy, content, cancel)
    if collected is not None:
        return collected, False
    try:
        with write_tx():  # one commit: the job, its first event and the record of its route message
            job = jobstate.create(content=content, user_id=user_id, channel_id=channel_id, scope=scope,
                                  requested_task_id=tid, request_id=request_id, dispatched_at=db_now(),
                                  thread_key=thread_key)
    except IntegrityError:
        existing = Job.get_or_none(Job.request_id == request_id)
        if existing is None:
            raise
        return _same_request(existing, content, user_id), False
    faults.kill_point("submit")
    rt.queue.enqueue("route", job.id, stamped=True)  # if this is lost, the workers' dispatch sweep re-sends it
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
        job = get_job(job_id)
        if job.state in TERMINAL or time.monotonic() >= deadline:
            return job
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)


def cancel(job_id: Any) -> Job:
    """Cancel a queued or running job (idempotent); Conflict for a job that already finished otherwise."""
    job = get_job(job_id)
    for _ in range(20):
        if job.state == S.CANCELLED:
            return job
        if job.state in TERMINAL:
            raise Conflict(f"job {job.id} already finished ({job.status}); nothing to cancel")
        jobstate.request_cancel(job.id)
        free = job.lease_owner is None or (job.lease_expires or 0) < db_now()
        if not free or jobstate.cancel_unleased(job):
            return get_job(job.id)  # a leased run: the worker holding the lease sees the flag and kills it
        job = get_job(job.id)
    return job


def retry(rt: Runtime, job_id: Any) -> Job:
    """Run a failed, cancelled or timed-out job again from the stage it stopped in."""
    job = get_job(job_id)
    if job.state not in jobstate.RETRYABLE_END:
        raise Conflict(f"job {job.id} is {job.status}; only failed, cancelled or timed_out jobs can be retried")
    dst, stage = (S.CLOSING, "close") if job.reply_message_id else (
        (S.GENERATING, "generate") if job.task_id else (S.QUEUED, "route"))
    if not jobstate.transition(job.id, job.state, dst, lease_owner=None, lease_expires=None,
                               events=[("retry.requested", stage, None)]):
        raise Conflict(f"job {job.id} changed state; try again")
    rt.queue.enqueue(stage, job.id)
    return get_job(job.id)


def move(rt: Runtime, job_id: Any, task_id: Any, as_user: str | None = None, who: str | None = None,
         source: str = "") -> tuple[Job, bool]:
    """Move a misrouted message (job J) to task N in one step: J's turn leaves its task's memory (and that task's
    agent session starts afresh, its prompt rebuilt from the memory), J's chat thread is bound to N, and a new job
    (``moved_from`` = J) generates the same message in N. Exactly once: a repeat returns that job (created False);
    a job already in N is returned as it is. Only a finished job moves (a running one: Conflict; cancel it or
    wait for its reply). ``as_user``: the caller may touch only this user's jobs (another's: NotFound, audited).
    Returns (the job now holding the message, whether this call made it)."""
    job = get_job(job_id)
    what = f"move job {job_id} to task {task_id}"
    if as_user is not None and job.user_id != as_user:
        record(rt.output_dir, rt.cfg.secrets(), "job_move", who=who or as_user, source=source, what=what,
               allowed=False, reason="not the caller's job")
        raise NotFound(f"job {job.id} does not exist")
    target = get_task(task_id)
    if target.scope != job.scope:
        raise NotFound(f"task {target.id} does not exist")
    done = Job.get_or_none(Job.moved_from == job.id)
    if done is not None:
        if done.requested_task_id != target.id:
            raise Conflict(f"job {job.id} was already moved to task {done.requested_task_id} as job {done.id}; "
                           f"move job {done.id} instead")
        return done, False
    if job.task_id == target.id:
        return job, False
    if job.state not in TERMINAL:
        raise Conflict(f"job {job.id} is still {job.status}; wait for its reply (or cancel it), then move it")
    source_task, emptied = job.task_id, False
    try:
        with write_tx():  # one commit: the old task forgets the turn, the thread follows, the new job exists
            forgot = 0
            if source_task is not None:
                turn = [m for m in Message.select().where(Message.id.in_(
                    [i for i in (job.user_message_id, job.reply_message_id) if i]))]
                forgot = memory.drop_turns(source_task, turn)
                if job.reply_message_id:
                    taskstate.forget_session(source_task)
                if job.decision == "new" and not Job.select().where(
                        (Job.task == source_task) & (Job.id != job.id)).exists():
                    emptied = taskstate.close(source_task, "manual", f"its only message moved to task {target.id}", 1.0)
            if job.thread_key and threads.bound_task(job.channel_id, job.thread_key) in (source_task, None):
                threads.bind(job.channel_id, job.thread_key, target.id, replace=True)
            moved = jobstate.create(content=job.content, user_id=job.user_id, channel_id=job.channel_id,
                                    scope=job.scope, requested_task_id=target.id, request_id=f"move:{job.id}",
                                    moved_from=job.id, thread_key=job.thread_key, dispatched_at=db_now())
            jobstate.add_event(job.id, "moved", None, {"from_task": source_task, "to_task": target.id,
                                                       "job_id": moved.id, "memory_turns_removed": forgot})
    except IntegrityError:  # a concurrent move of the same job made it first
        existing = Job.get_or_none(Job.moved_from == job.id)
        if existing is None:
            raise
        return existing, False
    if emptied:
        workspaces.on_task_closed(rt.cfg, source_task)  # workspace.cleanup = on_close, as for any closed task
    record(rt.output_dir, rt.cfg.secrets(), "job_move", who=who or job.user_id, source=source, what=what,
           allowed=True, job_id=moved.id, from_task=source_task)
    rt.queue.enqueue("route", moved.id, stamped=True)  # if this is lost, the dispatch sweep re-sends it
    return moved, True


def close_task(task_id: Any, reason: str = "closed by user", closed_by: str = "manual") -> Task:
    """Close a task (the same record the closer writes, with closed_by manual; workspace.cleanup applies)."""
    task = get_task(task_id)
    if taskstate.close(task.id, closed_by, reason, 1.0):
        workspaces.on_task_closed(get_runtime().cfg, task.id)
    return get_task(task.id)


def reopen_task(task_id: Any) -> Task:
    """Reopen a task (closed or not: it becomes the most recently active)."""
    task = get_task(task_id)
    taskstate.reopen(task.id)
    return get_task(task.id)
