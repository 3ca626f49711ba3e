"""Reconciliation: each configured repository's issues and comments updated since the saved cursor (every page),
turned into the same inbox events a webhook makes, so whatever a lost webhook missed is recorded once."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from ..base import Incoming
from .api import TrackerApi
from .events import Rules, comment, from_listing, issue_number


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat((text or "").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def load_cursor(cursor: str | None) -> dict[str, str]:
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def reconcile(api: TrackerApi, rules: Rules, cursor: dict[str, str], backfill_sec: float,
              repos: list[str] | None = None) -> tuple[list[Incoming], dict[str, str], dict[str, int]]:
    """Events for what changed since ``cursor`` (repo -> ISO time), the new cursor and counts seen."""
    events: list[Incoming] = []
    new = dict(cursor)
    counts = {"issues": 0, "comments": 0}
    for conf in rules.repos.values():
        repo = conf["repo"]
        if repos and repo.lower() not in {r.lower() for r in repos}:
            continue
        since = cursor.get(repo) or iso(time.time() - backfill_sec)
        newest = stamp(since) or 0.0
        issues = {}
        for issue in api.issues_since(repo, since):
            counts["issues"] += 1
            issues[issue["number"]] = issue
            events += from_listing(rules, repo, issue)
            newest = max(newest, stamp(issue.get("updated_at")) or 0.0)
        for note in api.comments_since(repo, since):
            counts["comments"] += 1
            number = issue_number(note)
            newest = max(newest, stamp(note.get("updated_at")) or 0.0)
            author = (note.get("user") or {}).get("login", "")
            if number is None or author.lower() == rules.bot_name.lower():
                continue
            issue = issues.get(number) or {"number": number}
            if issue.get("pull_request"):
                continue
            events.append(comment(rules, repo, issue, note))
        new[repo] = iso(newest)
    return events, new, counts
