"""Tracker issues and comments (from a webhook payload or a reconciliation listing) → inbox events.

Event ids are the tracker's own ids, not delivery ids, so a webhook and the reconciliation that finds the same
issue, or a redelivered webhook, record one event: ``owner/name#N:start`` (the issue becomes a task),
``owner/name:comment:ID`` (a comment), ``owner/name#N:closed:TIME`` / ``owner/name#N:reopened:TIME``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..base import Incoming


@dataclass(frozen=True)
class Rules:
    """One tracker channel's settings that decide which issues and comments are work."""

    platform: str
    bot_name: str
    start_on: tuple[str, ...]
    trigger_label: str
    repos: dict[str, dict]  # owner/name (lower case) -> {"repo", "allowed_users", "remote"}

    @classmethod
    def of(cls, cfg, platform: str) -> "Rules":
        p = f"channels.{platform}."
        return cls(platform, cfg[p + "bot_name"], tuple(cfg[p + "start_on"]), cfg[p + "trigger_label"],
                   {r["repo"].lower(): r for r in cfg[p + "repos"]})

    def repo(self, full_name: str) -> dict | None:
        return self.repos.get((full_name or "").lower())

    def allowed(self, full_name: str, login: str) -> bool:
        """Default deny: the repository is configured and the login is on its allowlist."""
        repo = self.repo(full_name)
        return bool(repo and login and login.lower() in {u.lower() for u in repo.get("allowed_users", [])})

    def mentions(self, text: str) -> bool:
        return bool(re.search(rf"(?<![\w@])@{re.escape(self.bot_name)}\b", text or "", re.I))


def thread_key(repo: str, number: int) -> str:
    return f"{repo}#{number}"


def label_names(issue: dict) -> list[str]:
    return [lb.get("name", "") for lb in issue.get("labels") or [] if isinstance(lb, dict)]


def _issue_payload(repo: str, issue: dict, html_repo: str | None = None) -> dict:
    return {"repo": repo, "number": issue["number"], "title": issue.get("title") or "",
            "body": issue.get("body") or "", "labels": label_names(issue), "html_url": issue.get("html_url"),
            "repo_url": html_repo, "author": (issue.get("user") or {}).get("login", "")}


def start(rules: Rules, repo: str, issue: dict, sender: str, html_repo: str | None = None) -> Incoming:
    """The issue becomes a task (opened, labelled with the trigger label, or found so by reconciliation)."""
    payload = _issue_payload(repo, issue, html_repo)
    return Incoming(f"{repo}#{issue['number']}:start", "message", user_id=sender,
                    channel_id=f"{rules.platform}:{repo}", thread_key=thread_key(repo, issue["number"]),
                    content=f"{payload['title']}\n\n{payload['body']}".strip(),
                    platform_message_id=str(issue.get("id") or issue["number"]), payload=payload)


def comment(rules: Rules, repo: str, issue: dict, note: dict, html_repo: str | None = None) -> Incoming:
    payload = _issue_payload(repo, issue, html_repo)
    payload.update(comment_id=note["id"], mention=rules.mentions(note.get("body") or ""))
    return Incoming(f"{repo}:comment:{note['id']}", "message", user_id=(note.get("user") or {}).get("login", ""),
                    channel_id=f"{rules.platform}:{repo}", thread_key=thread_key(repo, issue["number"]),
                    content=note.get("body") or "", platform_message_id=str(note["id"]), payload=payload)


def closed(rules: Rules, repo: str, issue: dict, sender: str) -> Incoming:
    stamp = issue.get("closed_at") or issue.get("updated_at") or ""
    return Incoming(f"{repo}#{issue['number']}:closed:{stamp}", "close", user_id=sender,
                    channel_id=f"{rules.platform}:{repo}", thread_key=thread_key(repo, issue["number"]),
                    content="issue closed", payload=_issue_payload(repo, issue))


def reopened(rules: Rules, repo: str, issue: dict, sender: str) -> Incoming:
    return Incoming(f"{repo}#{issue['number']}:reopened:{issue.get('updated_at') or ''}", "reopen", user_id=sender,
                    channel_id=f"{rules.platform}:{repo}", thread_key=thread_key(repo, issue["number"]),
                    content="issue reopened", payload=_issue_payload(repo, issue))


def from_webhook(rules: Rules, event: str, body: dict) -> tuple[Incoming | None, str]:
    """The inbox event a webhook delivery makes, or None and why it is not work. Forgejo, Gitea and GitHub share
    the shapes used here (``action``, ``issue``, ``comment``, ``repository.full_name``, ``sender.login``)."""
    repo_obj = body.get("repository") or {}
    repo = repo_obj.get("full_name") or ""
    sender = (body.get("sender") or {}).get("login", "")
    issue = body.get("issue")
    action = body.get("action", "")
    if event not in ("issues", "issue_comment") or not isinstance(issue, dict):
        return None, f"{event or 'unknown'} events are not work"
    if issue.get("pull_request") or body.get("is_pull"):
        return None, "pull request conversations are not work"
    if sender.lower() == rules.bot_name.lower():
        return None, "alter0's own action"
    html_repo = repo_obj.get("html_url")
    if event == "issue_comment":
        if action != "created" or not isinstance(body.get("comment"), dict):
            return None, f"comment {action} is not work"
        return comment(rules, repo, issue, body["comment"], html_repo), ""
    if action == "opened" and "opened" in rules.start_on:
        return start(rules, repo, issue, sender, html_repo), ""
    if action in ("label_updated", "labeled") and "label" in rules.start_on \
            and rules.trigger_label in label_names(issue) and issue.get("state") == "open":
        return start(rules, repo, issue, sender, html_repo), ""
    if action == "closed":
        return closed(rules, repo, issue, sender), ""
    if action == "reopened":
        return reopened(rules, repo, issue, sender), ""
    return None, f"issue {action} is not work"


def from_listing(rules: Rules, repo: str, issue: dict) -> list[Incoming]:
    """What reconciliation records for an issue updated since the last sync (its comments come separately)."""
    if issue.get("pull_request"):
        return []
    author = (issue.get("user") or {}).get("login", "")
    if issue.get("state") == "closed":
        return [closed(rules, repo, issue, author)]
    if ("opened" in rules.start_on) or ("label" in rules.start_on and rules.trigger_label in label_names(issue)):
        return [start(rules, repo, issue, author)] if author.lower() != rules.bot_name.lower() else []
    return []


def issue_number(note: dict) -> int | None:
    """The issue a listed comment belongs to (``issue_url`` ends with /issues/N)."""
    m = re.search(r"/issues/(\d+)$", note.get("issue_url") or "")
    return int(m.group(1)) if m else None


def as_issue(number: int, found: dict[int, dict]) -> dict[str, Any]:
    return found.get(number) or {"number": number}
