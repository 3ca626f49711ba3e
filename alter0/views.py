"""Reads every channel shows: jobs, tasks and timelines as dicts, pages of them, and the backlog counts."""

from __future__ import annotations

from typing import Any

from peewee import fn

from . import inputs, jobstate
from .errors import InputError, NotFound
from .models import ACTIVE, STAGE_OF_STATE, Job, JobEvent, JobStatus as S, Message, Task, TaskMemory, stage_of
from .workspaces import receipts


def get_job(job_id: Any) -> Job:
    """The job with this id, or NotFound."""
    job = jobstate.job_by_id(inputs.existing_id(job_id, "job"))
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def get_task(task_id: Any) -> Task:
    """The task with this id, or NotFound."""
    tid = inputs.existing_id(task_id, "task")
    task = Task.get_or_none(Task.id == tid)
    if task is None:
        raise NotFound(f"task {tid} does not exist")
    return task


def job_view(job: Job, events: bool = False) -> dict[str, Any]:
    """A job as the CLI and the API show it."""
    reply = job.reply_message.content if job.reply_message_id else None
    view = {
        "job_id": job.id, "status": job.status, "stage": stage_of(job.status), "task_id": job.task_id,
        "user_id": job.user_id, "channel_id": job.channel_id, "content": job.content, "moved_from": job.moved_from,
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
        "receipt": _receipt(job.id),
    }
    if events:
        view["events"] = [event_view(e) for e in JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id)]
    return view


def _receipt(job_id: int) -> dict[str, Any] | None:
    found = receipts.latest_for_job(job_id)
    return receipts.view(found) if found is not None else None


def busy_view(task_id: int) -> dict[str, Any]:
    """Whether a generation of the task is running, with which job, and the jobs waiting behind it."""
    running = Job.select(Job.id).where((Job.task == task_id) & (Job.status == S.GENERATING.value) &
                                       Job.lease_owner.is_null(False)).order_by(Job.id).first()
    waiting = [j.id for j in Job.select(Job.id).where(
        (Job.task == task_id) & (Job.status == S.GENERATING.value) & Job.lease_owner.is_null(True)).order_by(Job.id)]
    return {"busy": running is not None, "job_id": running.id if running else None, "waiting": waiting}


def workspace_view(task: Task) -> dict[str, Any] | None:
    """The task's workspace as recorded (repo, branch, base, worktree, state) or None."""
    if not task.branch:
        return None
    return {"repo": task.repo, "branch": task.branch, "base": task.base, "worktree": task.worktree,
            "state": task.workspace_state}


def event_view(e: JobEvent) -> dict[str, Any]:
    """One timeline entry: seq (the cursor), kind, stage, data, time."""
    return {"seq": e.id, "kind": e.kind, "stage": e.stage, "data": e.data, "at": e.created_at}


def new_events(job_id: int, after: int, limit: int = 500) -> list[JobEvent]:
    """The job's timeline entries after seq ``after``, oldest first (how streams and the CLI follow a job)."""
    return list(JobEvent.select().where((JobEvent.job == job_id) & (JobEvent.id > after))
                .order_by(JobEvent.id).limit(limit))


def error_text(error: dict | None) -> str:
    """An error as people read it: ``kind: message``."""
    return f"{error.get('kind')}: {error.get('message')}" if error else ""


def event_text(kind: str, stage: str | None, data: dict | None) -> str:
    """One timeline entry as one readable line (no time): what the CLI prints for ``job show --events``."""
    d = data or {}
    if kind == "submitted":
        return "submitted" + (f" to task #{d['task_id']}" if d.get("task_id") else "")
    if kind == "state":
        return f"{d.get('from')} -> {d.get('to')}"
    if kind == "stage.started":
        attempt = d.get("attempt")
        return f"{stage} started" + (f" (attempt {attempt})" if attempt and attempt != 1 else "")
    if kind == "stage.finished" and stage == "route":
        where = f"new task #{d.get('task_id')}" if d.get("decision") == "new" else f"task #{d.get('task_id')}"
        conf = d.get("confidence")
        return (f"routed to {where} ({d.get('source')}" + (f", confidence {conf:.2f}" if isinstance(conf, float) else "")
                + ")" + (f": {d['reason']}" if d.get("reason") else ""))
    if kind == "stage.finished" and stage == "generate":
        usage = d.get("usage") or {}
        return (f"reply written ({d.get('chars', 0)} chars, {usage.get('input_tokens', 0)} in / "
                f"{usage.get('output_tokens', 0)} out tokens)")
    if kind == "stage.finished" and stage == "close":
        return ("task closed" if d.get("close") else "task stays open") + (
            f" ({d['reason']})" if d.get("reason") else "")
    if kind == "error":
        return f"error {error_text(d)}"
    if kind == "executor.item":
        return f"{d.get('type') or 'item'} {d.get('phase') or ''}: {d.get('text') or ''}".replace(" :", ":")
    if kind == "executor.warning":
        return f"warning: {d.get('message')}"
    if kind == "executor.delta":
        return f"writing: {d.get('text', '')!r}"
    rest = ", ".join(f"{k}={v}" for k, v in d.items())
    return f"{kind}" + (f" ({rest})" if rest else "")


def list_jobs(status: str | None = None, task_id: Any = None, limit: Any = 50, cursor: Any = None,
              user_id: str | None = None) -> dict:
    """Jobs newest first (of ``user_id`` only if given), ``limit`` per page; ``cursor``: the previous page's last id."""
    q = Job.select() if user_id is None else Job.select().where(Job.user_id == user_id)
    if status is not None:
        allowed = [s.value for s in S]
        if status not in allowed:
            raise InputError(f"status must be one of {', '.join(allowed)}")
        q = q.where(Job.status == status)
    if task_id is not None:
        q = q.where(Job.task == inputs.parse_id(task_id))
    limit = inputs.parse_int(limit, "limit", 1, 500)
    if cursor is not None:
        q = q.where(Job.id < inputs.parse_int(cursor, "cursor", 0, inputs.MAX_ID))
    jobs = list(q.order_by(Job.id.desc()).limit(limit))
    return {"jobs": [job_view(j) for j in jobs],
            "next_cursor": jobs[-1].id if len(jobs) == limit else None}


def task_view(task: Task, detail: bool = False) -> dict[str, Any]:
    """A task as the CLI and the API show it; ``detail`` adds messages, memory and decisions."""
    view = {"id": task.id, "title": task.title, "status": task.status, "scope": task.scope,
            "user_id": task.user_id, "channel_id": task.channel_id, "executor": task.executor,
            "session_id": task.session_id, "created_at": task.created_at, "updated_at": task.updated_at,
            "last_active_at": task.last_active_at, "closed_at": task.closed_at, "closed_by": task.closed_by,
            "close_reason": task.close_reason, "close_confidence": task.close_confidence,
            "usage": {"input_tokens": task.input_tokens, "output_tokens": task.output_tokens,
                      "cost_usd": round(task.cost_usd, 6)},
            "busy_policy": task.busy_policy, "workspace": workspace_view(task)}
    if detail:
        view["busy"] = busy_view(task.id)
        view["receipts"] = [{"job_id": r.job_id, **receipts.view(r, live=False)}
                            for r in receipts.Receipt.select().where(receipts.Receipt.task == task.id).order_by(
                                receipts.Receipt.id)]
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
    """Tasks (open, closed or all; of ``user_id`` only if given), most recently active first."""
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


def backlog() -> dict[str, int]:
    """Unfinished jobs per state (queued, routing, generating, closing): the one backlog count."""
    counts = dict.fromkeys(ACTIVE, 0)
    for status, n in Job.select(Job.status, fn.COUNT(Job.id)).where(Job.status.in_(ACTIVE)).group_by(
            Job.status).tuples():
        counts[status] = n
    return counts


def backlog_by_stage() -> dict[str, int]:
    """The same backlog by the stage jobs wait for or run (route, generate, close)."""
    counts = {stage: 0 for stage in ("route", "generate", "close")}
    for status, n in backlog().items():
        counts[STAGE_OF_STATE[S(status)]] += n
    return counts
