"""Chat commands every platform shares, mapped onto the slash-command interpreter (alter0/commands.py): a
platform passes the command's name without its prefix (``/`` on Telegram, ``!`` on Matrix); job actions
(cancel, retry), ``new`` and ``assign`` (move a thread or the next messages to task N) are done here."""

from __future__ import annotations

from typing import Any

from .. import service, threads, views
from ..commands import COMMANDS, run_command
from ..errors import Alter0Error
from ..models import ChannelEvent, Job, JobStatus as S
from ..principals import Principal
from ..runtime import Runtime
from ..taskstate import scope_of
from . import inbox

STAGE_TEXT = {S.QUEUED: "queued", S.ROUTING: "choosing a task", S.GENERATING: "the agent is working",
              S.CLOSING: "wrapping up"}

#: Names handled here, besides the interpreter's own commands.
OWN = ("cancel", "retry", "new", "assign")


def working_line(job: Job) -> str:
    """The "working…" text: the job's stage, and its task once routed."""
    where = f", task #{job.task_id}" if job.task_id else ""
    return f"working… {STAGE_TEXT.get(job.state, job.status)} (job #{job.id}{where})"


def outcome_text(job: Job) -> str:
    """A finished job as a reply: which task and how it was chosen (the router's confidence), then the answer;
    or the job's status and error."""
    if job.state != S.DONE:
        return f"job #{job.id} {job.status}: {job.error or 'no detail'}"
    head = f"task #{job.task_id} · {job.decision_source}"
    if job.decision_source == "router":
        head += f" {job.route_confidence or 0:.2f}"
    return f"{head}\n\n{job.reply_message.content if job.reply_message_id else ''}"


def known(name: str) -> bool:
    return name in OWN or f"/{name}" in COMMANDS


def command(rt: Runtime, event: ChannelEvent, name: str, args: list[str]) -> str:
    """Run chat command ``name`` (no prefix) for the event's sender; the answer text (errors included)."""
    try:
        if name in ("cancel", "retry"):
            job_id = args[0] if args else inbox.last_job_of(event.platform, event.user_id, event.channel_id)
            if job_id is None:
                return f"no job of yours in this chat to {name}"
            return job_action(rt, event, name, job_id)
        if name == "assign":
            return assign(rt, event, args)
        line = " ".join(["/task", "new"] + args if name == "new" else [f"/{name}"] + args)
        principal = Principal(event.user_id, event.user_id in rt.cfg["security.admin_user_ids"], event.platform)
        return run_command(rt, line, event.user_id, event.channel_id, principal, source=event.platform).text
    except Alter0Error as exc:
        return exc.message


def job_action(rt: Runtime, event: ChannelEvent, action: str, job_id: Any) -> str:
    """Cancel or retry one of the sender's jobs; a retried job's new outcome is delivered like the first."""
    job = Job.get_or_none(Job.id == _num(job_id))
    if job is None or job.user_id != event.user_id:
        return f"job {job_id} does not exist"
    if action == "cancel":
        job = service.cancel(job.id)
        return f"job #{job.id} {'cancelled' if job.status == 'cancelled' else 'is being cancelled'}"
    job = service.retry(rt, job.id)
    origin = ChannelEvent.get_or_none(ChannelEvent.job == job.id, ChannelEvent.platform == event.platform)
    if origin is not None:
        inbox.mark(origin, "submitted")
    return f"job #{job.id} retried ({job.status})"


def own_task(rt: Runtime, event: ChannelEvent, value: Any):
    """The sender's task ``value`` (another scope's task "does not exist")."""
    task = views.get_task(value)
    if task.scope != scope_of(rt.cfg, event.user_id, event.channel_id):
        raise service.NotFound(f"task {value} does not exist")
    return task


def assign(rt: Runtime, event: ChannelEvent, args: list[str]) -> str:
    """Move to task N: inside a thread, the thread (its next messages go to N); elsewhere the sender's next
    messages (``/task use N``)."""
    if len(args) != 1:
        return "usage: assign TASK_ID (see task list)"
    task = own_task(rt, event, args[0])
    if event.thread_key:
        threads.bind(event.channel_id, event.thread_key, task.id, replace=True)
        return f"this thread now goes to task #{task.id}: {task.title}"
    return command(rt, event, "task", ["use", str(task.id)])


def _num(value: Any) -> int | None:
    try:
        return int(str(value).rsplit(":", 1)[-1])
    except ValueError:
        return None
