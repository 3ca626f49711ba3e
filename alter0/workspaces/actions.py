"""What channels (CLI, API, console) do with a task's workspace: review, merge, discard, prune, each merge,
discard and prune written to the audit log with who asked and how it ended."""

from __future__ import annotations

from typing import Any

from ..errors import Alter0Error, NotFound
from ..inputs import existing_id
from ..jsonlog import audit
from ..models import Task
from . import merge as merging, prune as pruning, review


def task_of(task_id: Any) -> Task:
    """The task with this id, or NotFound."""
    tid = existing_id(task_id, "task")
    task = Task.get_or_none(Task.id == tid)
    if task is None:
        raise NotFound(f"task {tid} does not exist")
    return task


def diff(task_id: Any, stat_only: bool = False) -> dict[str, Any]:
    """The task's diff against its base (``stat_only``: files and counts only)."""
    return review.diff(task_of(task_id), stat_only=stat_only)


def raw_diff(task_id: Any) -> str:
    """The whole unified diff, uncut."""
    return review.raw_diff(task_of(task_id))


def _audited(cfg, action: str, who: str, fn, **fields) -> dict[str, Any]:
    try:
        result = fn()
    except Alter0Error as exc:
        audit(cfg.output_dir, action=action, user_id=who, allowed=True, ok=False, error=exc.message, **fields)
        raise
    audit(cfg.output_dir, action=action, user_id=who, allowed=True, ok=True, **fields)
    return result


def merge(cfg, task_id: Any, squash: bool = False, who: str = "") -> dict[str, Any]:
    """Merge the task's branch into its base (refused on conflicts, which the error lists)."""
    task = task_of(task_id)
    return _audited(cfg, "task.merge", who, lambda: merging.merge(cfg, task, squash), task_id=task.id, squash=squash)


def discard(cfg, task_id: Any, force: bool = False, who: str = "") -> dict[str, Any]:
    """Remove the task's worktree and branch (uncommitted work only with ``force``)."""
    task = task_of(task_id)
    return _audited(cfg, "task.discard", who, lambda: merging.discard(cfg, task, force), task_id=task.id, force=force)


def prune(cfg, force: bool = False, who: str = "", on_progress=None) -> dict[str, Any]:
    """Remove worktrees of closed, merged and discarded tasks and orphans; report disk use (each step to
    ``on_progress(done, total, what)`` when given)."""
    return _audited(cfg, "workspace.prune", who, lambda: pruning.prune(cfg, force, on_progress), force=force)
