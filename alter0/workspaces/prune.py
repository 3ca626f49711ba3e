"""``alter0 workspace prune``: remove the worktrees of closed, merged or discarded tasks and orphans under
workspace.root, never one holding uncommitted work unless forced; report what was removed, kept and the disk used.
Branches stay (a closed task's commits are kept; a later message makes its worktree again). Each worktree looked
at is reported to an optional ``on_progress(done, total, what)`` (the CLI's bar on a terminal)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from .. import taskstate
from ..models import Task
from .git import WorkspaceError, dirty_paths, git
from .worktree import Workspace, admin_dir, disk_bytes, remove, root_of, stored


def prune(cfg, force: bool = False, on_progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Remove what is no longer needed; {removed, kept, disk_bytes_freed, disk_bytes_in_use}."""
    removed, kept, live = [], [], set()
    tasks = list(Task.select().where(Task.worktree.is_null(False)))
    root = root_of(cfg)
    under_root = sorted(root.iterdir()) if root.is_dir() else []
    total = len(tasks) + len(under_root)
    report = on_progress or (lambda done, total, what: None)
    for i, task in enumerate(tasks):
        report(i, total, f"task #{task.id}")
        ws = stored(task)
        if ws is None:
            continue
        if task.status == "open" and task.workspace_state == "active":
            live.add(ws.path.resolve())
            continue
        if task.workspace_state == "active" or ws.path.exists():
            _remove_one(ws, force, removed, kept, f"task {task.id} is {task.status}")
            if not ws.path.exists():
                taskstate.set_workspace(task.id, workspace_state="removed" if task.workspace_state == "active"
                                        else task.workspace_state)
            else:
                live.add(ws.path.resolve())
    for i, path in enumerate(under_root):
        report(len(tasks) + i, total, path.name)
        if path.resolve() not in live and path.is_dir():
            _remove_orphan(path, force, removed, kept)
    report(total, total, "done")
    in_use = sum(disk_bytes(p) for p in live if p.is_dir())
    return {"removed": removed, "kept": kept, "disk_bytes_freed": sum(r["bytes"] for r in removed),
            "disk_bytes_in_use": in_use, "worktrees_in_use": len(live)}


def _remove_one(ws: Workspace, force: bool, removed: list, kept: list, why: str) -> None:
    size = disk_bytes(ws.path) if ws.path.is_dir() else 0
    try:
        remove(ws, force=force)
    except WorkspaceError as exc:
        kept.append({"path": str(ws.path), "task_id": ws.task_id, "reason": exc.message})
        return
    removed.append({"path": str(ws.path), "task_id": ws.task_id, "bytes": size, "why": why})


def _remove_orphan(path: Path, force: bool, removed: list, kept: list) -> None:
    """A directory under the root no open task owns: a worktree of a deleted task, or a stale leftover."""
    size = disk_bytes(path)
    admin = admin_dir(path)
    if admin is not None and admin.is_dir():
        dirty = dirty_paths(path)
        if dirty and not force:
            kept.append({"path": str(path), "task_id": None,
                         "reason": f"orphan worktree with uncommitted changes ({', '.join(dirty[:5])}); use --force"})
            return
        repo = (admin / "commondir").read_text().strip() if (admin / "commondir").exists() else None
        git(["worktree", "remove", "--force", "--force", str(path)], path, check=False)
        if repo:
            git(["worktree", "prune"], admin / repo, check=False)
    elif not force and any(path.iterdir()):
        kept.append({"path": str(path), "task_id": None,
                     "reason": "not a git worktree and not empty (a leftover of an interrupted creation); use --force"})
        return
    if path.exists():
        shutil.rmtree(path)
    removed.append({"path": str(path), "task_id": None, "bytes": size, "why": "orphan"})
