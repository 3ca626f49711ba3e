"""Receipts: what one turn changed, read from git (commits, files, diffstat, uncommitted paths) and checked
against what the agent's reply claims; stored, re-verified when shown, summarised in one line."""

from __future__ import annotations

import re
from typing import Any

from ..models import Receipt, Task
from .git import git, ok, dirty_paths
from .worktree import Workspace

#: A commit id as a reply may name one: 7 to 40 hex digits with at least one digit and one letter.
SHA_IN_TEXT = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def commits_between(ws: Workspace, start: str | None, end: str | None) -> list[dict[str, str]]:
    """Commits on the task branch after ``start`` up to ``end``, oldest first: [{sha, subject}]."""
    if not end or start == end:
        return []
    span = f"{start}..{end}" if start else end
    lines = git(["log", "--reverse", "--format=%H%x00%s", span], ws.repo).stdout.splitlines()
    return [dict(zip(("sha", "subject"), line.split("\0", 1))) for line in lines if "\0" in line]


def files_between(ws: Workspace, start: str | None, end: str | None) -> list[dict[str, Any]]:
    """[{path, added, deleted}] between two commits (None for a binary file's counts)."""
    if not end or not start or start == end:
        return []
    out = []
    for line in git(["diff", "--numstat", "-z", "--no-renames", start, end], ws.repo).stdout.split("\0"):
        parts = line.split("\t", 2)
        if len(parts) == 3:
            added, deleted, path = parts
            out.append({"path": path, "added": None if added == "-" else int(added),
                        "deleted": None if deleted == "-" else int(deleted)})
    return out


def claimed_shas(text: str) -> list[str]:
    """Commit ids the reply names (lower case, each once)."""
    return list(dict.fromkeys(SHA_IN_TEXT.findall((text or "").lower())))


def build(ws: Workspace, start: str | None, end: str | None, head_branch: str | None, reply: str,
          check: dict | None, commit_mode: str) -> dict[str, Any]:
    """The receipt of one turn, with ``verified`` and the problems that deny it."""
    commits = commits_between(ws, start, end)
    files = files_between(ws, start, end)
    uncommitted = dirty_paths(ws.path)
    claimed = claimed_shas(reply)
    problems = []
    if head_branch != ws.branch:
        problems.append(f"the worktree is on {head_branch or 'a detached HEAD'}, not on {ws.branch}")
    ours = [c["sha"] for c in commits]
    for sha in claimed:
        if not any(full.startswith(sha) for full in ours):
            problems.append(f"the reply names commit {sha}, which this turn did not add to {ws.branch}")
    if commit_mode == "never":
        if not uncommitted and not files:
            problems.append("the turn changed no file")
    elif not commits:
        problems.append("the turn added no commit")
    if check is not None and not check["passed"]:
        problems.append("the check timed out" if check["timed_out"] else f"the check failed (exit {check['exit_code']})")
    return {"branch": ws.branch, "start_sha": start, "end_sha": end, "commits": commits, "files": files,
            "uncommitted": uncommitted, "claimed": claimed, "check": check, "problems": problems,
            "verified": not problems}


def record(job_id: int, task_id: int, data: dict[str, Any]) -> Receipt:
    """Store a receipt (inside the generate stage's final transaction)."""
    return Receipt.create(job=job_id, task=task_id, **data)


def latest_for_job(job_id: int) -> Receipt | None:
    return Receipt.select().where(Receipt.job == job_id).order_by(Receipt.id.desc()).first()


def view(r: Receipt, live: bool = True) -> dict[str, Any]:
    """A receipt as channels show it; ``live`` re-checks that its commits are still on the task's branch."""
    problems = list(r.problems or [])
    task = Task.get_or_none(Task.id == r.task_id)
    if live and task is not None and task.workspace_state == "active" and task.repo and r.commits:
        last = r.commits[-1]["sha"]  # its ancestors, the turn's earlier commits, are on the branch if it is
        if not ok(["merge-base", "--is-ancestor", last, f"refs/heads/{r.branch}"], task.repo):
            problems.append(f"commit {last[:12]} is no longer on {r.branch} (changed outside alter0)")
    added = sum(f["added"] or 0 for f in r.files or [])
    deleted = sum(f["deleted"] or 0 for f in r.files or [])
    return {"branch": r.branch, "start_sha": r.start_sha, "end_sha": r.end_sha, "commits": r.commits,
            "files": r.files, "diffstat": {"files": len(r.files or []), "added": added, "deleted": deleted},
            "uncommitted": r.uncommitted, "claimed": r.claimed, "check": r.check,
            "verified": not problems, "problems": problems, "created_at": r.created_at}


def summary(data: dict[str, Any]) -> str:
    """The one-line summary appended to the reply."""
    files = data["files"]
    added = sum(f["added"] or 0 for f in files)
    deleted = sum(f["deleted"] or 0 for f in files)
    parts = [f"{len(data['commits'])} commit(s) on {data['branch']}", f"{len(files)} file(s) +{added}/-{deleted}"]
    if data["uncommitted"]:
        parts.append(f"{len(data['uncommitted'])} uncommitted")
    check = data["check"]
    if check is not None:
        parts.append("check passed" if check["passed"] else "check timed out" if check["timed_out"]
                     else f"check failed (exit {check['exit_code']})")
    verdict = "verified" if data["verified"] else "not verified: " + "; ".join(data["problems"])
    return f"[receipt: {', '.join(parts)} · {verdict}]"
