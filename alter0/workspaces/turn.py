"""What the generate and close stages ask of workspaces: the executor's working directory for a turn, the turn's
receipt afterwards, and whether a receipt lets the closer close the task."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import taskstate
from ..errors import ExecutorError
from ..models import Receipt, Task
from . import receipts, worktree
from .check import run_check
from .git import WorkspaceError, dirty_paths, git

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One turn's working directory; with a worktree, the branch tip it started from."""

    path: Path
    ws: worktree.Workspace | None = None
    start_sha: str | None = None


def workdir_for(cfg, task: Task) -> Turn:
    """The executor's cwd for this turn: executor.workdir_root/task-<id> (workspace.mode none), or the task's git
    worktree (made, reused or repaired). A workspace failure is an ``exit_error`` naming it."""
    if cfg["workspace.mode"] == "none":
        path = Path(cfg["executor.workdir_root"] or cfg.output_dir / "work") / f"task-{task.id}"
        path.mkdir(parents=True, exist_ok=True)
        return Turn(path)
    try:
        ws = worktree.ensure(cfg, task)
        return Turn(ws.path, ws, worktree.branch_tip(ws))
    except WorkspaceError as exc:
        raise ExecutorError("exit_error", f"workspace of task {task.id}: {exc.message}") from None


def after_turn(cfg, turn: Turn, reply: str, timeout: float, cancel: threading.Event) -> dict | None:
    """The turn's receipt (None without a worktree): commits what it left when workspace.commit = turn, runs the
    check, reads the rest from git."""
    ws = turn.ws
    if ws is None:
        return None
    try:
        if cfg["workspace.commit"] == "turn" and dirty_paths(ws.path):
            _commit_all(ws, f"alter0: task {ws.task_id} turn\n\nUncommitted changes left by the agent, committed by alter0.")
        argv = cfg["workspace.check_command"]
        check = run_check(argv, ws.path, timeout, cancel) if argv else None
        return receipts.build(ws, turn.start_sha, worktree.branch_tip(ws), worktree.head_branch(ws), reply, check,
                              cfg["workspace.commit"])
    except WorkspaceError as exc:
        raise ExecutorError("exit_error", f"workspace of task {ws.task_id}: {exc.message}") from None


def _commit_all(ws: worktree.Workspace, message: str) -> None:
    identity = [] if git(["config", "user.email"], ws.path, check=False).stdout.strip() else [
        "-c", "user.name=alter0", "-c", "user.email=alter0@localhost"]
    git(["add", "-A"], ws.path)
    git([*identity, "commit", "--no-verify", "-q", "-m", message], ws.path)


def on_task_closed(cfg, task_id: int) -> None:
    """With workspace.cleanup = on_close, remove a closed task's worktree (the branch stays); one holding
    uncommitted work is kept (logged)."""
    task = Task.get_or_none(Task.id == task_id)
    ws = worktree.stored(task) if task is not None and cfg["workspace.cleanup"] == "on_close" else None
    if ws is None or task.workspace_state != "active":
        return
    try:
        worktree.remove(ws)
    except WorkspaceError as exc:
        log.warning("task %s closed; its worktree is kept: %s", task_id, exc.message)
        return
    taskstate.set_workspace(task_id, workspace_state="removed")


def allows_close(job_id: int) -> bool:
    """False when the job's receipt shows a failed check or a commit the reply claims but git lacks: such a task is
    never closed automatically."""
    r = Receipt.select().where(Receipt.job == job_id).order_by(Receipt.id.desc()).first()
    if r is None:
        return True
    check_failed = r.check is not None and not r.check.get("passed")
    return not check_failed and not any("the reply names commit" in p for p in r.problems or [])
