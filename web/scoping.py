"""What a user token may see and touch: its user's jobs and tasks only (admins and tokenless loopback see all).

Another user's job or task answers 404, as if it did not exist, so ids cannot be probed.
"""

from __future__ import annotations

from alter0.errors import NotFound
from alter0.models import Job, Task

from .security import principal


def confined_user() -> str | None:
    """The user a non-admin token is confined to, or None (admin, shared token, tokenless loopback)."""
    me = principal()
    return me.user_id if me is not None and me.via.startswith("token:") and not me.admin else None


def own_job(job: Job) -> Job:
    """``job`` if the caller may see it, else NotFound."""
    user = confined_user()
    if user is not None and job.user_id != user:
        raise NotFound(f"job {job.id} does not exist")
    return job


def own_task(task: Task) -> Task:
    """``task`` if the caller may see it (its user's, or shared in its user's scope), else NotFound."""
    user = confined_user()
    if user is not None and task.user_id != user and task.scope != f"user:{user}":
        raise NotFound(f"task {task.id} does not exist")
    return task
