"""Decide a task's work: merge its branch into the base (fast-forward or a merge commit, or one squashed commit),
refusing on conflicts with the conflicting files shown; or discard it. Both end the worktree and close the task."""

from __future__ import annotations

from typing import Any

from .. import taskstate
from ..errors import Conflict
from ..models import Task
from .git import WorkspaceError, dirty_paths, git, rev
from .review import workspace_of
from .worktree import Workspace, registered, remove, repo_lock, root_of


class MergeConflict(Conflict):
    """The branch does not merge cleanly into the base; ``data`` lists the conflicts."""

    code = "merge_conflict"

    def __init__(self, message: str, conflicts: list[str], details: str):
        super().__init__(message)
        self.data = {"conflicts": conflicts, "details": details}


def conflicts(ws: Workspace) -> tuple[list[str], str]:
    """Files that would conflict merging the branch into the base, and git's messages (nothing is touched)."""
    done = git(["merge-tree", "--write-tree", "--name-only", "--messages", ws.base, ws.branch], ws.repo, check=False)
    if done.returncode == 0:
        return [], ""
    if done.returncode != 1:
        raise WorkspaceError(f"git merge-tree failed: {done.stderr.strip()}")
    head, _, messages = done.stdout.partition("\n\n")
    return [line for line in head.splitlines()[1:] if line], messages.strip()


def merge(cfg, task: Task, squash: bool = False) -> dict[str, Any]:
    """Merge the task's branch into its base; the worktree and branch end, the task closes."""
    ws = workspace_of(task)
    if ws.path.is_dir() and dirty_paths(ws.path):
        raise Conflict(f"task {task.id}'s worktree has uncommitted changes ({', '.join(dirty_paths(ws.path)[:5])}): "
                       "commit them (or set workspace.commit = turn) before merging, or discard")
    with repo_lock(ws.repo):
        found, details = conflicts(ws)
        if found:
            raise MergeConflict(f"task {task.id} does not merge into {ws.base}: {len(found)} conflicting file(s) "
                                f"({', '.join(found[:10])}); nothing was changed", found, details)
        before = rev(f"refs/heads/{ws.base}", ws.repo)
        sha = _merge_in_checkout(cfg, ws, task, squash)
    _end(ws, task, "merged", force=False)
    return {"task_id": task.id, "merged": True, "base": ws.base, "branch": ws.branch, "squash": squash,
            "fast_forward": not squash and before != sha and rev(f"{sha}^2", ws.repo) is None, "sha": sha}


def _merge_in_checkout(cfg, ws: Workspace, task: Task, squash: bool) -> str:
    """Merge where the base is checked out (it must be clean), or in a temporary worktree of it."""
    checkout = next((p for p, b in registered(ws.repo).items() if b == ws.base), None)
    temporary = checkout is None
    if temporary:
        checkout = root_of(cfg) / f".merge-task-{task.id}"
        git(["worktree", "add", str(checkout), ws.base], ws.repo)
    elif dirty_paths(checkout):
        raise Conflict(f"{ws.base} is checked out in {checkout} with uncommitted changes; commit or stash them first")
    ident = [] if git(["config", "user.email"], checkout, check=False).stdout.strip() else [
        "-c", "user.name=alter0", "-c", "user.email=alter0@localhost"]
    message = f"alter0: task {task.id}: {task.title}"
    try:
        if squash:
            git(["merge", "--squash", ws.branch], checkout)
            git([*ident, "commit", "--no-verify", "-q", "-m", message], checkout)
        else:
            git([*ident, "merge", "--no-edit", "-m", message, ws.branch], checkout)
    except WorkspaceError:
        git(["reset", "--merge"], checkout, check=False)
        raise
    finally:
        if temporary:
            git(["worktree", "remove", "--force", str(checkout)], ws.repo, check=False)
    return rev(f"refs/heads/{ws.base}", ws.repo)


def discard(cfg, task: Task, force: bool = False) -> dict[str, Any]:
    """Throw the task's work away: worktree and branch removed (uncommitted work only with ``force``)."""
    ws = workspace_of(task)
    _end(ws, task, "discarded", force=force)
    return {"task_id": task.id, "discarded": True, "branch": ws.branch}


def _end(ws: Workspace, task: Task, state: str, force: bool) -> None:
    remove(ws, force=force)
    git(["branch", "-D", ws.branch], ws.repo, check=False)
    taskstate.set_workspace(task.id, workspace_state=state)
    taskstate.close(task.id, "manual", f"workspace {state}", 1.0)
