"""Task rows: the scope tasks are shared in, create, touch, close and reopen (the one home of what closing and
reopening a task writes)."""

from __future__ import annotations

from .models import Task, now


def scope_of(cfg, user_id: str, channel_id: str) -> str:
    """The scope key tasks are shared in: the user by default, the channel when task.scope = channel."""
    if cfg["task.scope"] == "channel" and channel_id:
        return f"channel:{channel_id}"
    return f"user:{user_id}"


def create(scope: str, user_id: str, channel_id: str, content: str, executor: str) -> Task:
    """A new open task titled after the first line of ``content``."""
    first = " ".join(content.split())
    title = first[:80] + ("…" if len(first) > 80 else "")
    t = now()
    return Task.create(title=title or "untitled", scope=scope, user_id=user_id, channel_id=channel_id,
                       executor=executor, created_at=t, updated_at=t, last_active_at=t)


def touch(task_id: int) -> None:
    """A message was routed to the task: it is the most recently active."""
    Task.update(last_active_at=now(), updated_at=now()).where(Task.id == task_id).execute()


def record_turn(task_id: int, session_id: str | None, tokens_in: int, tokens_out: int, cost: float) -> None:
    """An executor turn ended: keep its session id and add its usage to the task's totals."""
    Task.update(session_id=session_id, last_active_at=now(), updated_at=now(),
                input_tokens=Task.input_tokens + tokens_in, output_tokens=Task.output_tokens + tokens_out,
                cost_usd=Task.cost_usd + cost).where(Task.id == task_id).execute()


def close(task_id: int, closed_by: str, reason: str, confidence: float) -> bool:
    """Close an open task (closed_by auto | manual); False when it was not open."""
    return Task.update(status="closed", closed_at=now(), closed_by=closed_by, close_reason=reason,
                       close_confidence=confidence, updated_at=now()).where(
        (Task.id == task_id) & (Task.status == "open")).execute() == 1


def set_workspace(task_id: int, **fields) -> None:
    """Record a task's workspace: repo, branch, base, worktree, workspace_state, busy_policy (only those given)."""
    Task.update(updated_at=now(), **fields).where(Task.id == task_id).execute()


def reopen(task_id: int) -> None:
    """Reopen a task: the close record is cleared and it becomes the most recently active."""
    Task.update(status="open", closed_at=None, closed_by=None, close_reason=None, close_confidence=None,
                updated_at=now(), last_active_at=now()).where(Task.id == task_id).execute()
