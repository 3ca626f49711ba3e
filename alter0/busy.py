"""task.busy_policy: what a message for a task whose generation is running does — enqueue (wait its turn), reject
(409 naming the running job), interrupt (cancel the running generation; the new message is the next turn) or
collect (appended to the turn already waiting, so one turn answers both). Decided when the message is submitted
for a known task (the task forced with /task use, else the task id given); a message the router sends to a busy
task waits its turn (enqueue)."""

from __future__ import annotations

from typing import Any

from . import jobstate
from .config import BUSY_POLICIES
from .database import write_tx
from .errors import Conflict, InputError
from .candidates import USER_STATE, task_by_id
from .models import Job, Message, Task
from .views import busy_view

COLLECT_SEPARATOR = "\n\n(another message arrived while the task was busy)\n"


class TaskBusy(Conflict):
    """The task's generation is running and its busy policy is reject."""

    code = "task_busy"

    def __init__(self, message: str, job_id: int):
        super().__init__(message)
        self.data = {"busy_job_id": job_id}


def policy_of(cfg, task: Task | None, requested: Any) -> str:
    """The policy that applies: the request's, else the task's, else task.busy_policy."""
    if requested not in (None, ""):
        if requested not in BUSY_POLICIES:
            raise InputError(f"busy_policy must be one of {', '.join(BUSY_POLICIES)}")
        return requested
    return (task.busy_policy if task else None) or cfg["task.busy_policy"]


def target(user_id: str, task: Task | None) -> Task | None:
    """The task a message will go to if known before routing: the user's forced task, else the one named."""
    state = USER_STATE.first(user_id)
    forced = task_by_id(state.forced_task_id) if state and state.forced_task_id else None
    return forced or task


def before_submit(cfg, user_id: str, task: Task | None, requested: Any, content: str, cancel) -> Job | None:
    """Apply the policy to a message for ``task`` (or the user's forced task); a job when the message was collected
    into it, else None (the caller submits it as usual). ``cancel(job_id)`` cancels a job (the service's cancel)."""
    policy_of(cfg, None, requested)  # a bad value is refused whatever the task
    task = target(user_id, task)
    if task is None:
        return None
    policy = policy_of(cfg, task, requested)
    if policy == "enqueue":  # today's behaviour: no need to look at what the task runs
        return None
    busy = busy_view(task.id)
    if not busy["busy"]:
        return None
    running = busy["job_id"]
    if policy == "reject":
        raise TaskBusy(f"task {task.id} is busy: job {running} is generating; send again when it ends, or with "
                       "busy_policy interrupt, enqueue or collect", running)
    if policy == "interrupt":
        cancel(running)
        return None
    for waiting in busy["waiting"]:  # collect: into the next turn, if one is already waiting
        with write_tx():
            job = jobstate.job_by_id(waiting)
            if job.user_message_id and jobstate.collect_into(job.id, COLLECT_SEPARATOR + content):
                Message.update(content=Message.content.concat(COLLECT_SEPARATOR + content)).where(
                    Message.id == job.user_message_id).execute()
                return jobstate.job_by_id(job.id)
    return None
