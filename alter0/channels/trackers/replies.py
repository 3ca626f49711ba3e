"""What alter0 writes on an issue: the "working on it" comment and its progress edits, the reply with the
workspace receipt (summary, commits, diffstat, check, branch link), and the pull request's text."""

from __future__ import annotations

import hashlib
from typing import Any

from ...models import Job, JobStatus as S

#: Longest comment written (GitHub refuses bodies over 65,536 characters).
LIMIT = 60000
STAGE_TEXT = {S.QUEUED: "queued", S.ROUTING: "queued", S.GENERATING: "the agent is working",
              S.CLOSING: "wrapping up"}
STATUS = {S.QUEUED: "todo", S.ROUTING: "todo", S.GENERATING: "doing", S.CLOSING: "doing"}


def marker(key: str) -> str:
    """The invisible mark a comment carries of the delivery that wrote it (Markdown renders HTML comments as
    nothing): a restart that finds it on the tracker knows the comment was made and does not post it again."""
    return f"<!-- alter0:delivery={hashlib.sha256(key.encode()).hexdigest()[:16]} -->"


def working(job: Job) -> str:
    return f"⏳ **alter0** is working on it (job #{job.id}: {STAGE_TEXT.get(job.state, job.status)})"


def finished(job: Job) -> str:
    return f"✔️ **alter0** finished job #{job.id} ({job.status}); the reply is below."


def reply(job: Job, receipt: dict | None, branch_url: str | None) -> str:
    head = f"**alter0** · task #{job.task_id} · job #{job.id}"
    if job.state == S.DONE:
        text = job.reply_message.content if job.reply_message_id else ""
    else:
        text = f"The job ended {job.status}: {job.error or 'no detail'}"
    body = f"{head}\n\n{text}"
    if receipt is not None:
        body += "\n\n" + receipt_block(receipt, branch_url)
    return body if len(body) <= LIMIT else body[:LIMIT - 40] + "\n\n… (cut; the whole reply is in alter0)"


def receipt_block(r: dict[str, Any], branch_url: str | None) -> str:
    """The receipt as a Markdown block (the same facts ``alter0 job show`` lists)."""
    verdict = "✅ verified" if r["verified"] else "⚠️ not verified: " + "; ".join(r["problems"])
    stat = r["diffstat"]
    lines = ["#### Receipt", f"- **Result:** {verdict}",
             f"- **Diffstat:** {stat['files']} file(s), +{stat['added']}/-{stat['deleted']}"]
    lines += [f"  - `{f['path']}` +{f['added'] or 0}/-{f['deleted'] or 0}" for f in (r["files"] or [])[:30]]
    lines.append(f"- **Commits:** {len(r['commits'] or [])}")
    lines += [f"  - `{c['sha'][:12]}` {c['subject']}" for c in (r["commits"] or [])[:30]]
    check = r.get("check")
    if check is None:
        lines.append("- **Check:** none configured")
    else:
        result = "passed" if check.get("passed") else "timed out" if check.get("timed_out") \
            else f"failed (exit {check.get('exit_code')})"
        lines.append(f"- **Check:** `{' '.join(check.get('argv') or [])}` {result}")
    lines.append(f"- **Branch:** [{r['branch']}]({branch_url})" if branch_url else f"- **Branch:** `{r['branch']}`")
    if r.get("uncommitted"):
        lines.append(f"- **Uncommitted:** {', '.join(r['uncommitted'][:20])}")
    return "\n".join(lines)


def pull_request(number: int, task_id: int, receipt: dict) -> tuple[str, str]:
    """Title and body of the pull request for a verified task."""
    subjects = [c["subject"] for c in receipt["commits"] or []]
    title = (subjects[-1] if subjects else f"alter0 task #{task_id}")[:200]
    body = (f"Closes #{number}\n\nWork of alter0 task #{task_id}, receipt verified:\n\n"
            + "\n".join(f"- `{c['sha'][:12]}` {c['subject']}" for c in receipt["commits"] or []))
    return title, body
