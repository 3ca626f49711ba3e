"""The tracker channels (``alter0 channel forgejo`` / ``alter0 channel github``): issues and comments recorded by
the webhooks (``web/hooks.py``) or by reconciliation (``poll``) become jobs, one issue one task; replies, progress,
status labels, the assignee, issue closing and pull requests go back through the outbox."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from ... import service, threads
from ...models import ChannelDelivery, ChannelEvent, Job, JobStatus as S, Task, ThreadBinding
from ...runtime import Runtime
from ...workspaces import git, receipts
from ..base import Channel, Outgoing, Permanent
from . import replies
from .api import TrackerApi
from .events import Rules
from .sync import load_cursor, reconcile

STATUS_PREFIX = "status:"
#: Seconds before a reconciliation that failed (tracker down) is tried again.
RETRY_SYNC_SEC = 30.0
#: Seconds before a delivery's creation its comment is looked for (the tracker's clock may be behind ours).
MARK_SKEW_SEC = 600.0
#: The end of the close reason of a task closed because its issue was.
CLOSED_ON = "closed on {platform}"


class TrackerChannel(Channel):
    """Shared by Forgejo/Gitea and GitHub: the two differ only in the API client's spelling and the webhook headers."""

    #: Reconciliation returns whatever changed: never a "cold start" flood to filter.
    batch_limit = 10 ** 9

    def __init__(self, rt: Runtime):
        super().__init__(rt)
        p = f"channels.{self.platform}."
        self.rules = Rules.of(self.cfg, self.platform)
        self.api = TrackerApi(self.platform, self.cfg[p + "api_url"], self.cfg[p + "token"],
                              self.cfg["channels.delivery.request_timeout_sec"])
        self.interval = self.cfg[p + "reconcile_interval_sec"]
        self.next_sync = 0.0
        self.swept_at = 0.0  # tasks closed since then close their issues (0: look at all once after a start)

    @classmethod
    def problems(cls, cfg) -> list[str]:
        p = f"channels.{cls.platform}."
        out = []
        if not cfg[p + "api_url"]:
            out.append(f"{p}api_url is not set (e.g. https://forgejo.example/api/v1)")
        if not cfg[p + "token"]:
            out.append(f"{p}token is not set (set ALTER0_{cls.platform.upper()}_TOKEN)")
        if not cfg[p + "repos"]:
            out.append(f"{p}repos is empty: no repository may start work")
        secrets = {k.lower() for k, v in cfg[p + "webhook_secrets"].items() if v}
        out += [f"{p}webhook_secrets has no secret for {r['repo']}: its webhooks are refused"
                for r in cfg[p + "repos"] if r["repo"].lower() not in secrets]
        out += [f"{p}repos: {r['repo']} has no allowed_users: nobody may start work there"
                for r in cfg[p + "repos"] if not r.get("allowed_users")]
        return out

    # --- in -----------------------------------------------------------------------------------------
    def poll(self, cursor: str | None, cold: bool):
        """Reconciliation, every ``reconcile_interval_sec`` (waits in 1 s steps between syncs)."""
        wait = self.next_sync - time.time()
        if wait > 0:
            time.sleep(min(wait, 1.0))
            return [], cursor
        self.next_sync = time.time() + min(self.interval, RETRY_SYNC_SEC)  # a failed sync is tried again soon
        found = self.sync(cursor)[:2]
        self.next_sync = time.time() + self.interval
        return found

    def sync(self, cursor: str | None, repos: list[str] | None = None):
        """One reconciliation pass: events, the new cursor (JSON: repo -> ISO time) and counts seen."""
        events, new, counts = reconcile(self.api, self.rules, load_cursor(cursor),
                                        self.cfg[f"channels.{self.platform}.backfill_sec"], repos)
        return events, json.dumps(new, sort_keys=True), counts

    def allowed(self, event: ChannelEvent) -> bool:
        repo = (event.payload or {}).get("repo", "")
        if event.kind in ("close", "reopen") or not is_work(self.platform, event):
            return self.rules.repo(repo) is not None  # closing is the tracker's permission; chatter is ignored
        return self.rules.allowed(repo, event.user_id)

    def submission(self, event: ChannelEvent) -> dict | None:
        """One issue, one task: the issue's events go to a scope of their own (so the router never sends them to
        another issue's task) and its thread is bound to the task its first job made."""
        p = event.payload or {}
        starts = event.event_id.endswith(":start")
        active = thread_active(self.platform, event.thread_key)
        if not is_work(self.platform, event, self.rules):
            return None  # a comment on an issue no task works on
        if starts and active:
            return None  # labelled after it was opened: already a task
        said = f"@{event.user_id} commented: {event.content}"
        content = said
        if not active:  # the task's first message: the issue itself, what its labels mean, then the comment
            label_map = self.cfg[f"channels.{self.platform}.label_map"]
            mapped = [label_map[lb] for lb in p.get("labels", []) if lb in label_map]
            head = f"Issue {p.get('repo')}#{p.get('number')}: {p.get('title', '')}".strip()
            parts = [head] + ([", ".join(mapped)] if mapped else []) + ([p["body"]] if p.get("body") else [])
            content = "\n\n".join(parts + ([] if starts else [said]))
        return {"content": content, "user_id": self.issue_id(event), "channel_id": self.issue_id(event),
                "thread_key": event.thread_key}

    def issue_id(self, event: ChannelEvent) -> str:
        """The user and channel an issue's jobs run as (``forgejo:owner/name#N``): a scope of its own whether
        task.scope is user or channel."""
        return f"{self.platform}:{event.thread_key}"

    # --- answers ------------------------------------------------------------------------------------
    def refuse(self, event: ChannelEvent) -> list[Outgoing]:
        return []  # strangers get no comment (the refusal is audited)

    def rejected(self, event: ChannelEvent, message: str) -> list[Outgoing]:
        return [self._comment(event, "rejected", f"Not sent to the agent: {message}")]

    def answer(self, event: ChannelEvent) -> list[Outgoing]:
        task_id = threads.bound_task(self.issue_id(event), event.thread_key)
        task = Task.get_or_none(Task.id == task_id) if task_id else None
        if task is not None and event.kind == "close" and task.status == "open":
            service.close_task(task.id, reason=f"issue {event.thread_key} "
                               + CLOSED_ON.format(platform=self.platform))
        if task is not None and event.kind == "reopen" and task.status == "closed":
            service.reopen_task(task.id)
        return []

    # --- jobs ---------------------------------------------------------------------------------------
    def working(self, event: ChannelEvent, job: Job) -> list[Outgoing]:
        out = self._comment(event, "working", replies.working(job))
        out.key = self.working_key(event)
        return [out] + self._status(event, "todo", assign=True)

    def progress(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        edit = Outgoing(f"progress:{self.platform}:{event.id}:{job.status}", "edit_comment",
                        {"repo": event.payload["repo"], "comment_id": working.result_id, "body": replies.working(job)})
        return [edit] + (self._status(event, "doing") if replies.STATUS.get(job.state) == "doing" else [])

    def outcome(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        round_ = int((job.finished_at or 0) * 1000)
        receipt_row = receipts.latest_for_job(job.id)
        receipt = receipts.view(receipt_row) if receipt_row is not None else None
        conf = self.rules.repo(event.payload["repo"]) or {}
        pushed = bool(receipt and receipt["verified"] and conf.get("remote")
                      and self.cfg["workspace.pr"] == "on_verified")
        branch_url = self.branch_url(event.payload["repo"], receipt["branch"]) if pushed else None
        out = [self._comment(event, f"reply:{round_}", replies.reply(job, receipt, branch_url))]
        if working is not None:
            out.append(Outgoing(f"finished:{self.platform}:{event.id}:{round_}", "edit_comment",
                                {"repo": event.payload["repo"], "_edit_of": self.working_key(event),
                                 "body": replies.finished(job)}))
        out += self._status(event, "done" if job.state == S.DONE else "todo", key=f"{round_}")
        if pushed:
            task = Task.get_by_id(job.task_id)
            title, body = replies.pull_request(event.payload["number"], task.id, receipt)
            out.append(Outgoing(f"pr:{self.platform}:{task.id}:{(receipt['end_sha'] or '')[:12]}", "pull_request",
                                {"repo": event.payload["repo"], "remote": conf["remote"], "branch": receipt["branch"],
                                 "base": task.base or "main", "git_repo": task.repo or self.cfg["workspace.repo"],
                                 "title": title, "body": body}))
        return out

    def sweep(self):
        """Tasks of this tracker closed (by the closer, a person, `alter0 task close`) close their issues."""
        since, self.swept_at = self.swept_at, time.time()
        rows = (Task.select(Task, ThreadBinding.thread_key, ThreadBinding.channel_id)
                .join(ThreadBinding, on=(ThreadBinding.task == Task.id))
                .where(ThreadBinding.channel_id.startswith(f"{self.platform}:"), Task.status == "closed",
                       Task.closed_at >= since - 5).objects())
        out = []
        for task in rows:
            if (task.close_reason or "").endswith(CLOSED_ON.format(platform=self.platform)):
                continue  # closed because its issue was: nothing to write (a reopen may already have followed)
            repo, _, number = task.thread_key.rpartition("#")
            payload = {"repo": repo, "number": int(number)}
            items = [Outgoing(f"close:{self.platform}:{task.id}:{int(task.closed_at)}", "close_issue", payload)]
            if self.cfg[f"channels.{self.platform}.status_labels"]:
                items.append(Outgoing(f"status:{self.platform}:{task.id}:closed:{int(task.closed_at)}", "status",
                                      dict(payload, status="done", assign=False)))
            out.append((None, items))
        return out

    # --- out ----------------------------------------------------------------------------------------
    def _comment(self, event: ChannelEvent, kind: str, body: str) -> Outgoing:
        return Outgoing(f"{kind}:{self.platform}:{event.id}", "comment",
                        {"repo": event.payload["repo"], "number": event.payload["number"], "body": body})

    def _status(self, event: ChannelEvent, status: str, assign: bool = False, key: str = "") -> list[Outgoing]:
        if not self.cfg[f"channels.{self.platform}.status_labels"]:
            return []
        return [Outgoing(f"status:{self.platform}:{event.id}:{status}{':' + key if key else ''}", "status",
                         {"repo": event.payload["repo"], "number": event.payload["number"], "status": status,
                          "assign": assign})]

    def branch_url(self, repo: str, branch: str) -> str:
        root = self.cfg[f"channels.{self.platform}.api_url"].rstrip("/")
        if self.platform == "github":
            web = "https://github.com" if root == "https://api.github.com" else root.rsplit("/api/", 1)[0]
            return f"{web}/{repo}/tree/{branch}"
        return f"{root.rsplit('/api/v1', 1)[0]}/{repo}/src/branch/{branch}"

    def send(self, delivery: ChannelDelivery) -> str | None:
        p = delivery.payload
        if delivery.method == "comment":
            mark = replies.marker(delivery.key)
            made = self.marked_comment(p["repo"], mark, delivery.created_at)
            if made is not None:
                return made  # posted by an attempt that died before the outbox marked it: not again
            return str(self.api.comment(p["repo"], p["number"], f"{p['body']}\n\n{mark}")["id"])
        if delivery.method == "edit_comment":
            target = p.get("comment_id")
            if p.get("_edit_of"):
                ref = ChannelDelivery.get_or_none(ChannelDelivery.key == p["_edit_of"])
                target = ref.result_id if ref is not None else None
            if not target:
                return None  # the comment it edits was never made: nothing to change
            return str(self.api.edit_comment(p["repo"], target, p["body"])["id"])
        if delivery.method == "status":
            issue = self.api.issue(p["repo"], p["number"])
            kept = [lb for lb in issue.get("labels") or [] if not lb["name"].startswith(STATUS_PREFIX)]
            self.api.set_labels(p["repo"], p["number"], [lb["name"] for lb in kept] + [STATUS_PREFIX + p["status"]],
                                known={lb["name"]: lb["id"] for lb in kept if "id" in lb})
            if p.get("assign"):
                self.api.edit_issue(p["repo"], p["number"], assignees=[self.rules.bot_name])
            return None
        if delivery.method == "close_issue":
            self.api.edit_issue(p["repo"], p["number"], state="closed")
            return None
        if delivery.method == "pull_request":
            try:  # the task's branch to the tracker's remote first: a pull request needs it there
                git.git(["push", p["remote"], f"refs/heads/{p['branch']}:refs/heads/{p['branch']}"], p["git_repo"])
            except git.WorkspaceError as exc:
                raise Permanent(f"push of {p['branch']} failed: {exc.message}") from None
            pr = self.api.create_pull(p["repo"], p["branch"], p["base"], p["title"], p["body"])
            return str(pr.get("number")) if pr else "exists"
        raise Permanent(f"unknown delivery method {delivery.method!r}")

    def marked_comment(self, repo: str, mark: str, created_at: float) -> str | None:
        """The id of the bot's comment carrying ``mark`` written since the delivery was queued, if any. Comment
        creation is not idempotent and the outbox marks a delivery only after the tracker answered, so every
        comment is looked for before it is posted (one listing of the repository's comments since then)."""
        since = datetime.fromtimestamp(created_at - MARK_SKEW_SEC, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for note in self.api.comments_since(repo, since):
            author = ((note.get("user") or {}).get("login") or "").lower()
            if author == self.rules.bot_name.lower() and mark in (note.get("body") or ""):
                return str(note["id"])
        return None

    def close(self) -> None:
        self.api.close()


def thread_active(platform: str, thread_key: str | None) -> bool:
    """Whether a task works on this issue (one of its events made a job)."""
    return ChannelEvent.select().where(ChannelEvent.platform == platform, ChannelEvent.thread_key == thread_key,
                                       ChannelEvent.job.is_null(False)).exists()


def is_work(platform: str, event, rules: Rules | None = None) -> bool:
    """Is this (recorded or arriving) event asking for work: an issue start, a close, or a comment on an issue a
    task works on or mentioning the bot (with ``start_on`` mention)? Other comments are people talking."""
    if event is None or event.kind != "message" or event.event_id.endswith(":start"):
        return event is not None
    mention = (event.payload or {}).get("mention")
    starts_by_mention = mention and (rules is None or "mention" in rules.start_on)
    return bool(starts_by_mention or thread_active(platform, event.thread_key))


class ForgejoChannel(TrackerChannel):
    """Forgejo and Gitea (the same API and webhook shapes; both signature headers accepted)."""

    platform = "forgejo"


class GithubChannel(TrackerChannel):
    """GitHub issues (and GitHub Enterprise through channels.github.api_url)."""

    platform = "github"
