"""A small httpx client for the tracker REST calls alter0 makes, Forgejo/Gitea (``/api/v1``) and GitHub alike:
issue comments (create, edit), issue labels and assignees, issue state, pull requests, and the listings
reconciliation reads (issues and comments updated since a time, every page followed through the ``Link``
header). Answers map to Transient (429, 5xx, timeouts, connection errors) and Permanent (other 4xx).

Why not pyforgejo / PyGithub: two generated clients with different shapes for one small set of calls that the
two APIs spell the same way (they differ in the page-size parameter, the auth scheme and how an issue's labels
are named: GitHub takes names, Forgejo/Gitea's ``IssueLabelsOption`` label ids)."""

from __future__ import annotations

import logging
import re
from typing import Any, Iterator

import httpx

from ..base import Permanent, Transient

logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

PAGE_SIZE = 50
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class TrackerApi:
    """Calls ``<api_url>/repos/{owner}/{repo}/...`` with the token; the token never appears in an error."""

    def __init__(self, platform: str, api_url: str, token: str, timeout: float):
        self.platform = platform
        self.token = token
        auth = f"Bearer {token}" if platform == "github" else f"token {token}"
        headers = {"Accept": "application/vnd.github+json" if platform == "github" else "application/json",
                   "User-Agent": "alter0"}
        if token:
            headers["Authorization"] = auth
        self.client = httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout, headers=headers)
        self.page_param = "per_page" if platform == "github" else "limit"

    # --- one call ------------------------------------------------------------------------------------
    def call(self, method: str, path: str, json: Any = None, params: dict | None = None,
             ok: tuple[int, ...] = ()) -> httpx.Response:
        try:
            resp = self.client.request(method, path.lstrip("/"), json=json, params=params)
        except httpx.TimeoutException:
            raise Transient(f"{method} {path}: timed out") from None
        except httpx.TransportError as exc:
            raise Transient(f"{method} {path}: {type(exc).__name__}: {self._clean(str(exc))}") from None
        if resp.status_code < 300 or resp.status_code in ok:
            return resp
        detail = self._clean(_message(resp))
        if resp.status_code == 429 or (resp.status_code == 403 and resp.headers.get("Retry-After")):
            raise Transient(f"{method} {path}: {resp.status_code} {detail}",
                            retry_after=float(resp.headers.get("Retry-After") or 1))
        if resp.status_code >= 500 or resp.status_code == 408:
            raise Transient(f"{method} {path}: {resp.status_code} {detail}")
        raise Permanent(f"{method} {path}: {resp.status_code} {detail}")

    def pages(self, path: str, params: dict) -> Iterator[dict]:
        """Every item of a listing, following ``Link: <…>; rel="next"`` until there is none."""
        resp = self.call("GET", path, params={**params, self.page_param: PAGE_SIZE, "page": 1})
        while True:
            items = resp.json()
            if not isinstance(items, list):
                raise Permanent(f"GET {path}: expected a list, got {type(items).__name__}")
            yield from items
            found = _NEXT.search(resp.headers.get("Link", ""))
            if not found or not items:
                return
            resp = self.call("GET", found.group(1))

    # --- what the channel does -----------------------------------------------------------------------
    def comment(self, repo: str, number: int, body: str) -> dict:
        return self.call("POST", f"repos/{repo}/issues/{number}/comments", {"body": body}).json()

    def edit_comment(self, repo: str, comment_id: int | str, body: str) -> dict:
        return self.call("PATCH", f"repos/{repo}/issues/comments/{comment_id}", {"body": body}).json()

    def issue(self, repo: str, number: int) -> dict:
        return self.call("GET", f"repos/{repo}/issues/{number}").json()

    def edit_issue(self, repo: str, number: int, **fields) -> dict:
        return self.call("PATCH", f"repos/{repo}/issues/{number}", fields).json()

    def set_labels(self, repo: str, number: int, names: list[str], known: dict[str, int] | None = None) -> list:
        """Replace the issue's labels by name. GitHub takes names; Forgejo/Gitea's ``IssueLabelsOption`` takes
        label ids, so names become ids: ``known`` first (the issue's own labels, which may be organisation
        labels), then the repository's labels, creating the missing ones."""
        labels: list = names if self.platform == "github" else self.label_ids(repo, names, known or {})
        return self.call("PUT", f"repos/{repo}/issues/{number}/labels", {"labels": labels}).json()

    def label_ids(self, repo: str, names: list[str], known: dict[str, int]) -> list[int]:
        """The ids of ``names`` on a Forgejo/Gitea repository, in order; missing repository labels are created."""
        have = dict(known)

        def missing() -> list[str]:
            return [name for name in names if name not in have]

        def list_repo_labels() -> None:
            if missing():
                have.update({lb["name"]: lb["id"] for lb in self.pages(f"repos/{repo}/labels", {})
                             if lb.get("name") not in have})
        list_repo_labels()
        for name in missing():
            resp = self.call("POST", f"repos/{repo}/labels", {"name": name, "color": "#5319e7"}, ok=(409, 422))
            if resp.status_code < 300:
                have[name] = resp.json()["id"]
        list_repo_labels()  # created meanwhile by someone else (409/422): list again
        if missing():
            raise Permanent(f"labels {', '.join(missing())} could not be created on {repo}")
        return [have[name] for name in names]

    def create_pull(self, repo: str, head: str, base: str, title: str, body: str) -> dict | None:
        """Open a pull request; None when one for ``head`` already exists (409/422: opened by an earlier try)."""
        resp = self.call("POST", f"repos/{repo}/pulls", {"head": head, "base": base, "title": title, "body": body},
                         ok=(409, 422))
        return resp.json() if resp.status_code < 300 else None

    def issues_since(self, repo: str, since: str | None) -> Iterator[dict]:
        params = {"state": "all", "sort": "updated", "direction": "asc"} if self.platform == "github" \
            else {"state": "all", "type": "issues"}
        if since:
            params["since"] = since
        return self.pages(f"repos/{repo}/issues", params)

    def comments_since(self, repo: str, since: str | None) -> Iterator[dict]:
        return self.pages(f"repos/{repo}/issues/comments", {"since": since} if since else {})

    def _clean(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def close(self) -> None:
        self.client.close()


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase
    return str(body.get("message") or resp.reason_phrase)[:300] if isinstance(body, dict) else resp.reason_phrase
