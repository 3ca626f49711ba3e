"""Review a task's work: the unified diff of its branch against the base's merge base, files and +/- counts,
what is left uncommitted, and changes made outside alter0 (commits no receipt recorded, a base that moved)."""

from __future__ import annotations

from typing import Any

from ..errors import Conflict
from ..models import Receipt, Task
from .git import dirty_paths, git, out, rev
from .receipts import commits_between, files_between
from .worktree import Workspace, stored

#: Characters of unified diff returned before it is cut (the full diff stays available with ?raw=1).
DIFF_LIMIT_CHARS = 400_000


def workspace_of(task: Task) -> Workspace:
    """The task's recorded workspace; Conflict when it has none or it was merged or discarded."""
    ws = stored(task)
    if ws is None:
        raise Conflict(f"task {task.id} has no workspace (workspace.mode is none, or it has not run yet)")
    if task.workspace_state in ("merged", "discarded"):
        raise Conflict(f"task {task.id}'s workspace was {task.workspace_state}; there is nothing left to review")
    if rev(f"refs/heads/{ws.branch}", ws.repo) is None:
        raise Conflict(f"task {task.id}'s branch {ws.branch} no longer exists in {ws.repo} (deleted outside alter0)")
    return ws


def diff(task: Task, stat_only: bool = False, limit: int = DIFF_LIMIT_CHARS) -> dict[str, Any]:
    """The task's changes against its base: summary always, the unified diff unless ``stat_only``."""
    ws = workspace_of(task)
    base_tip = rev(f"refs/heads/{ws.base}", ws.repo)
    tip = rev(f"refs/heads/{ws.branch}", ws.repo)
    merge_base = out(["merge-base", ws.base, ws.branch], ws.repo) if base_tip else None
    files = files_between(ws, merge_base, tip)
    view = {"task_id": task.id, "repo": str(ws.repo), "branch": ws.branch, "base": ws.base, "merge_base": merge_base,
            "head": tip, "worktree": str(ws.path) if ws.path.is_dir() else None, "state": task.workspace_state,
            "files": files, "added": sum(f["added"] or 0 for f in files),
            "deleted": sum(f["deleted"] or 0 for f in files),
            "commits": commits_between(ws, merge_base, tip),
            "uncommitted": dirty_paths(ws.path) if ws.path.is_dir() else [],
            "out_of_band": out_of_band(task, ws, merge_base, base_tip, tip)}
    if not stat_only:
        text = git(["diff", "--no-color", "--no-ext-diff", merge_base or tip, tip], ws.repo).stdout if tip else ""
        view["truncated"] = len(text) > limit
        view["diff"] = text[:limit]
    return view


def split_files(text: str) -> list[dict[str, Any]]:
    """A unified diff cut per file for display: [{path, lines: [(kind, text)]}], kind add | del | hunk | meta | ctx."""
    files: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("diff --git "):
            files.append({"path": line.split(" b/", 1)[-1], "lines": []})
            continue
        if not files:
            continue
        kind = ("hunk" if line.startswith("@@") else "meta" if line.startswith(("+++", "---", "index ", "new file",
                "deleted file", "similarity", "rename ", "Binary")) else "add" if line.startswith("+")
                else "del" if line.startswith("-") else "ctx")
        files[-1]["lines"].append((kind, line))
    return files


def raw_diff(task: Task) -> str:
    """The whole unified diff, uncut."""
    ws = workspace_of(task)
    return git(["diff", "--no-color", "--no-ext-diff", f"{ws.base}...{ws.branch}"], ws.repo).stdout


def out_of_band(task: Task, ws: Workspace, merge_base: str | None, base_tip: str | None,
                tip: str | None) -> dict[str, Any]:
    """Commits on the branch that no receipt recorded, and commits the base gained since the task branched."""
    recorded = {c["sha"] for r in Receipt.select(Receipt.commits).where(Receipt.task == task.id) for c in r.commits}
    foreign = [c for c in commits_between(ws, merge_base, tip) if c["sha"] not in recorded]
    moved = int(out(["rev-list", "--count", f"{merge_base}..{base_tip}"], ws.repo)) if merge_base and base_tip else 0
    notes = []
    if foreign:
        notes.append(f"{len(foreign)} commit(s) on {ws.branch} were made outside alter0's turns")
    if moved:
        notes.append(f"{ws.base} moved on by {moved} commit(s) since the task branched")
    if base_tip is None:
        notes.append(f"base branch {ws.base} no longer exists")
    return {"commits": foreign, "base_moved_by": moved, "notes": notes}
