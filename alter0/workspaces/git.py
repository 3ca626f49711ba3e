"""The only place that runs git: argv lists (never a shell), a timeout on every call, errors as WorkspaceError."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Sequence

from ..errors import Alter0Error

#: Seconds one git command may take (a worktree checkout of a large repository included).
GIT_TIMEOUT_SEC = 120.0
#: git's own lock files held by another git process: retried, not reported.
LOCK_MARKERS = ("index.lock", ".lock': File exists", "could not lock", "Unable to create", "is locked")


class WorkspaceError(Alter0Error):
    """A git or workspace operation failed (not a repository, a missing branch, git itself failing)."""

    code, status, exit_code = "workspace", 409, 5


def git(args: Sequence[str], cwd: str | os.PathLike, *, check: bool = True, timeout: float = GIT_TIMEOUT_SEC,
        retries: int = 20) -> subprocess.CompletedProcess:
    """Run ``git ARGS`` in ``cwd``; retry while another git holds a lock; WorkspaceError on failure if ``check``."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
    for attempt in range(retries + 1):
        try:
            done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            missing = "git is not installed" if exc.filename == "git" else f"directory {cwd} does not exist"
            raise WorkspaceError(missing) from None
        except subprocess.TimeoutExpired:
            raise WorkspaceError(f"git {' '.join(args[:2])} did not finish within {timeout:g} s in {cwd}") from None
        locked = done.returncode != 0 and any(m in done.stderr for m in LOCK_MARKERS)
        if not locked or attempt == retries:
            break
        time.sleep(min(0.05 * (attempt + 1), 0.5))
    if check and done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args[:3])} failed in {cwd}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def out(args: Sequence[str], cwd: str | os.PathLike, **kw) -> str:
    """The stripped standard output of a git command that must succeed."""
    return git(args, cwd, **kw).stdout.strip()


def ok(args: Sequence[str], cwd: str | os.PathLike) -> bool:
    """Whether a git command succeeds (a question such as ``merge-base --is-ancestor``)."""
    return git(args, cwd, check=False).returncode == 0


def toplevel(path: str | os.PathLike) -> Path:
    """The top of the git repository at ``path``, or WorkspaceError naming it."""
    if not Path(path).is_dir():
        raise WorkspaceError(f"workspace repository {path} does not exist")
    done = git(["rev-parse", "--show-toplevel"], path, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"workspace repository {path} is not a git repository")
    return Path(done.stdout.strip())


def common_dir(repo: Path) -> Path:
    """The repository's shared .git directory (worktrees share it)."""
    return (repo / out(["rev-parse", "--git-common-dir"], repo)).resolve()


def rev(ref: str, cwd: str | os.PathLike) -> str | None:
    """The commit ``ref`` names, or None."""
    done = git(["rev-parse", "--verify", "--quiet", ref + "^{commit}"], cwd, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def dirty_paths(worktree: str | os.PathLike) -> list[str]:
    """Paths with uncommitted changes in a worktree (untracked files included)."""
    lines = git(["status", "--porcelain", "-z", "--untracked-files=all"], worktree).stdout.split("\0")
    return [line[3:] for line in lines if len(line) > 3]
