"""Task rows: the scope tasks are shared in, create, touch, close and reopen (the one home of what closing and
reopening a task writes)."""

from __future__ import annotations

from .config import Config
from .models import Task, now
from . import prepared
from .prepared import update


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
    return prepared.create(Task, title=title or "untitled", scope=scope, user_id=user_id, channel_id=channel_id,
                       executor=executor, created_at=t, updated_at=t, last_active_at=t)


def touch(task_id: int) -> None:
    """A message was routed to the task: it is the most recently active."""
    t = now()
    update(Task, {"last_active_at": t, "updated_at": t}, {"id": task_id})


def record_turn(task_id: int, session_id: str | None, tokens_in: int, tokens_out: int, cost: float,
                session_usage: dict | None = None) -> None:
    """An executor turn ended: keep its session id (and the running totals it reported for that session) and
    add the turn's own usage to the task's totals."""
    t = now()
    update(Task, {"session_id": session_id, "session_usage": session_usage, "last_active_at": t, "updated_at": t},
           {"id": task_id}, add={"input_tokens": tokens_in, "output_tokens": tokens_out, "cost_usd": cost})


#: Usage counters that an agent reporting running totals (codex) accumulates over a session.
COUNTERS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


def turn_usage(reported: dict, session_total: dict | None) -> dict:
    """What one turn used, from an agent that reports its session's running totals: the growth of each counter
    since ``session_total`` (the totals after the session's previous recorded turn; None for a new session).
    A counter that went down means a new session: its value is the turn's own."""
    out = dict(reported)
    for key in COUNTERS:
        if key in reported and session_total:
            grown = int(reported[key]) - int(session_total.get(key, 0))
            out[key] = grown if grown >= 0 else int(reported[key])
    return out


def turn_cost(cfg: Config, executor: str, usage: dict) -> float:
    """The turn's cost in USD: what the agent reported, else ``usage.prices`` of the model (executor.model)
    or of the executor applied to its tokens, else 0."""
    if isinstance(usage.get("cost_usd"), (int, float)):
        return float(usage["cost_usd"])
    prices = cfg["usage.prices"]
    price = prices.get(cfg["executor.model"]) or prices.get(executor)
    if not price:
        return 0.0
    tokens_in, cached = int(usage.get("input_tokens") or 0), int(usage.get("cached_input_tokens") or 0)
    cached = min(cached, tokens_in)
    return ((tokens_in - cached) * price.get("input", 0) + cached * price.get("cached_input", price.get("input", 0))
            + int(usage.get("output_tokens") or 0) * price.get("output", 0)) / 1e6


def close(task_id: int, closed_by: str, reason: str, confidence: float) -> bool:
    """Close an open task (closed_by auto | manual); False when it was not open."""
    return Task.update(status="closed", closed_at=now(), closed_by=closed_by, close_reason=reason,
                       close_confidence=confidence, updated_at=now()).where(
        (Task.id == task_id) & (Task.status == "open")).execute() == 1


def forget_session(task_id: int) -> None:
    """Start the task's agent session afresh at its next turn (its prompt then carries the task's memory): the
    agent's own session holds a turn that was moved out of the task, and an agent CLI cannot delete one turn."""
    Task.update(session_id=None, session_usage=None, updated_at=now()).where(Task.id == task_id).execute()


def set_workspace(task_id: int, **fields) -> None:
    """Record a task's workspace: repo, branch, base, worktree, workspace_state, busy_policy (only those given)."""
    Task.update(updated_at=now(), **fields).where(Task.id == task_id).execute()


def reopen(task_id: int) -> None:
    """Reopen a task: the close record is cleared and it becomes the most recently active."""
    Task.update(status="open", closed_at=None, closed_by=None, close_reason=None, close_confidence=None,
                updated_at=now(), last_active_at=now()).where(Task.id == task_id).execute()
