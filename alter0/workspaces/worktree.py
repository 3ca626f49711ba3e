"""A task's worktree: where it lives, create, reuse, repair after a crash, remove; one task per worktree.

Creation and removal hold a per-repository file lock (next to git's own locks in the shared .git directory) and
retry on git's lock files, so concurrent tasks on one repository never race. A worktree counts as made only once
the ``alter0-ready`` mark is in its admin directory: a worker that died half-way leaves a registered but
unmarked worktree, which the next turn removes (``git worktree remove --force``, ``git worktree prune``) and
makes again from the branch (whose commits are kept).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import taskstate
from ..models import Task
from .git import WorkspaceError, common_dir, dirty_paths, git, rev, toplevel

READY_MARK = "alter0-ready"


@dataclass(frozen=True)
class Workspace:
    """Where a task's agent works: the repository, the worktree path, its branch and the base branch."""

    task_id: int
    repo: Path
    path: Path
    branch: str
    base: str


def root_of(cfg) -> Path:
    """The directory task worktrees live in (workspace.root, default output_dir/worktrees)."""
    return Path(cfg["workspace.root"] or cfg.output_dir / "worktrees").resolve()


def current_branch(repo: Path) -> str:
    """The branch checked out in ``repo``; WorkspaceError when detached."""
    done = git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"{repo} has no branch checked out (detached HEAD): set workspace.base")
    return done.stdout.strip()


def plan(cfg, task: Task) -> Workspace:
    """The workspace a task has, or would get on its first turn (nothing is created)."""
    raw = task.repo or cfg["workspace.repo"]
    if not raw:
        raise WorkspaceError("workspace.mode is worktree but no repository is set: set workspace.repo, or give the "
                             "task one with /task repo PATH")
    repo = Path(task.repo) if task.repo and task.branch else toplevel(raw)
    base = task.base or cfg["workspace.base"] or current_branch(repo)
    branch = task.branch or f"{cfg['workspace.branch_prefix']}task-{task.id}"
    path = Path(task.worktree) if task.worktree else root_of(cfg) / f"task-{task.id}"
    return Workspace(task.id, repo, path, branch, base)


def stored(task: Task) -> Workspace | None:
    """The workspace recorded on the task (None if it never had one)."""
    if not (task.repo and task.branch and task.base):
        return None
    return Workspace(task.id, Path(task.repo), Path(task.worktree or ""), task.branch, task.base)


@contextmanager
def repo_lock(repo: Path) -> Iterator[None]:
    """Exclude other alter0 processes from creating or removing worktrees of ``repo`` meanwhile."""
    with open(common_dir(repo) / "alter0-worktrees.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def registered(repo: Path) -> dict[Path, str | None]:
    """Worktrees git knows of in ``repo``: path -> branch (None when detached)."""
    found: dict[Path, str | None] = {}
    path = None
    for line in git(["worktree", "list", "--porcelain"], repo).stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[9:])
            found[path] = None
        elif line.startswith("branch ") and path is not None:
            found[path] = line[7:].removeprefix("refs/heads/")
    return found


def admin_dir(path: Path) -> Path | None:
    """The worktree's own admin directory (.git/worktrees/<name>), from its .git file; None if there is none."""
    dotgit = path / ".git"
    if not dotgit.is_file():
        return None
    text = dotgit.read_text(errors="replace").strip()
    return Path(text[8:]) if text.startswith("gitdir: ") else None


def healthy(ws: Workspace) -> bool:
    """The worktree is complete (marked ready), registered, and on the task's branch."""
    admin = admin_dir(ws.path)
    if admin is None or not (admin / READY_MARK).exists():
        return False
    return registered(ws.repo).get(ws.path.resolve()) == ws.branch


def ensure(cfg, task: Task) -> Workspace:
    """The task's worktree, made on its first turn, reused later, repaired if a crash left it half made."""
    ws = plan(cfg, task)
    if not healthy(ws):
        with repo_lock(ws.repo):
            if not healthy(ws):
                _make(ws)
    if (task.repo, task.branch, task.base, task.worktree, task.workspace_state) != (
            str(ws.repo), ws.branch, ws.base, str(ws.path), "active"):
        taskstate.set_workspace(task.id, repo=str(ws.repo), branch=ws.branch, base=ws.base, worktree=str(ws.path),
                                workspace_state="active")
    return ws


def _make(ws: Workspace) -> None:
    known = registered(ws.repo)
    where = known.get(ws.path.resolve(), "absent") if ws.path.exists() else "absent"
    if where not in ("absent", ws.branch) and admin_dir(ws.path) and (admin_dir(ws.path) / READY_MARK).exists():
        raise WorkspaceError(f"task {ws.task_id}'s worktree {ws.path} is on branch {where}, not {ws.branch}: "
                             "switch it back, or discard the task's workspace")
    if ws.path.resolve() in known:  # registered but never finished: a crash during creation
        git(["worktree", "remove", "--force", "--force", str(ws.path)], ws.repo, check=False)
    git(["worktree", "prune"], ws.repo)
    if ws.path.exists():  # a leftover directory git does not know: keep it aside for prune, never delete it here
        ws.path.rename(ws.path.with_name(f"{ws.path.name}.stale-{int(time.time() * 1000)}"))
    ws.path.parent.mkdir(parents=True, exist_ok=True)
    if rev(f"refs/heads/{ws.branch}", ws.repo):
        git(["worktree", "add", str(ws.path), ws.branch], ws.repo)
    else:
        if rev(f"refs/heads/{ws.base}", ws.repo) is None:
            raise WorkspaceError(f"base branch {ws.base} does not exist in {ws.repo}")
        git(["worktree", "add", "-b", ws.branch, str(ws.path), ws.base], ws.repo)
    _fault("after-add")
    (admin_dir(ws.path) / READY_MARK).write_text(str(ws.task_id))


def _fault(point: str) -> None:
    """Crash injection for tests: ALTER0_FAULT_WORKTREE=after-add kills this process half-way through creation."""
    if os.environ.get("ALTER0_FAULT_WORKTREE") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def remove(ws: Workspace, force: bool = False) -> None:
    """Remove the worktree (the branch stays); WorkspaceError naming the files if it holds uncommitted work and
    not ``force``."""
    if ws.path.is_dir() and admin_dir(ws.path) is not None:
        dirty = dirty_paths(ws.path)
        if dirty and not force:
            raise WorkspaceError(f"task {ws.task_id}'s worktree {ws.path} has uncommitted changes "
                                 f"({', '.join(dirty[:5])}{' …' if len(dirty) > 5 else ''}); commit them or use force")
    with repo_lock(ws.repo):
        if ws.path.resolve() in registered(ws.repo):
            git(["worktree", "remove", "--force", "--force", str(ws.path)], ws.repo)
        elif ws.path.is_dir() and force:
            shutil.rmtree(ws.path)
        git(["worktree", "prune"], ws.repo)


def disk_bytes(path: Path) -> int:
    """Bytes a worktree's files take (its share of the repository's objects is not counted)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def branch_tip(ws: Workspace) -> str | None:
    """The commit the task branch points at."""
    return rev(f"refs/heads/{ws.branch}", ws.repo)


def head_branch(ws: Workspace) -> str | None:
    """The branch checked out in the worktree (None when detached)."""
    done = git(["symbolic-ref", "--quiet", "--short", "HEAD"], ws.path, check=False)
    return done.stdout.strip() or None


