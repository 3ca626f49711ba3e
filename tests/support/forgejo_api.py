"""A local stand-in of a Forgejo (Gitea) server — and, with ``flavor="github"``, of the GitHub REST API — for the
tracker tests: the operations alter0 calls, at their real paths, checked against an excerpt of Forgejo/Gitea's
published API document (``forgejo_v1_json_excerpt.json``: the operations, definitions and responses copied verbatim
from go-gitea/gitea ``templates/swagger/v1_json.tmpl`` at commit 67ce9ca11034c00ea81f36f0e574529079534071, served at
``/swagger.v1.json`` as Forgejo serves its own). On the Forgejo flavor every request body is validated against its
definition, every query parameter against the operation's parameters (name, type, enum, RFC 3339 date-time), and every
answer the stand-in gives against the documented response schema (no undocumented field; ``null`` stands for an absent
Go pointer, as the real server sends it). ``Link`` / ``X-Total-Count`` pagination and ``since`` filtering; webhook
deliveries (``issues``, ``issue_comment``) shaped and headed as Forgejo's ``services/webhook/shared/payloader.go``
sends them: indented JSON, ``X-Forgejo-``/``X-Gitea-``/``X-Gogs-``/``X-GitHub-`` ``Event``, ``Event-Type`` and
``Delivery`` headers, the bare hex HMAC-SHA256 in ``X-Forgejo-Signature``/``X-Gitea-Signature``/``X-Gogs-Signature``,
``X-Hub-Signature: sha1=…`` and ``X-Hub-Signature-256: sha256=…`` (GitHub flavor: ``X-GitHub-Event``,
``X-GitHub-Delivery``, ``X-Hub-Signature-256``). Faults: an outage (``down_until``: 503 on every API call), lost
webhooks (``drop_webhooks``). A pull request's head must exist in the bare repository the test serves as the remote."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import jsonschema
import jsonschema.exceptions
import requests

TOKEN = "forgejo-test-token-0123456789abcdef"
SECRET = "webhook-secret-for-tests"
BOT = "alter0-bot"

#: The excerpt of Forgejo/Gitea's API document (see the module docstring for its source).
DOC = json.loads((Path(__file__).with_name("forgejo_v1_json_excerpt.json")).read_text())
DEFINITIONS = DOC["definitions"]
#: (method, path template, operationId, body definition, query parameters, success response schema)
OPERATIONS = [
    (method.upper(), path, op["operationId"],
     next((p["schema"]["$ref"].rsplit("/", 1)[1] for p in op["parameters"] if p["in"] == "body"), None),
     {p["name"]: p for p in op["parameters"] if p["in"] == "query"},
     next((DOC["responses"][r["$ref"].rsplit("/", 1)[1]].get("schema") for code, r in op["responses"].items()
           if code.startswith("2")), None))
    for path, ops in DOC["paths"].items() for method, op in ops.items()]


def document() -> dict:
    """The served excerpt of the API document (swagger 2.0)."""
    return DOC


def _strict(node):
    """A definition as the stand-in holds its own answers to it: no property the document does not list."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


STRICT = _strict(DEFINITIONS)


def _no_nulls(obj):
    """An answer with its ``null`` fields dropped: the real server sends ``null`` for an absent Go pointer."""
    if isinstance(obj, dict):
        return {k: _no_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_no_nulls(v) for v in obj]
    return obj


def check(schema: dict, instance, definitions: dict = DEFINITIONS) -> str | None:
    """The first way ``instance`` breaks ``schema`` (``$ref`` into the excerpt's definitions), or None."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft4Validator({**schema, "definitions": definitions}).iter_errors(instance))
    return None if error is None else f"{'/'.join(str(x) for x in error.absolute_path) or '(body)'}: {error.message}"


def check_query(params: dict, query: dict) -> str | None:
    """The first query parameter the operation does not document or whose value breaks its type/enum/format."""
    for name, value in query.items():
        spec = params.get(name)
        if spec is None:
            return f"query parameter {name!r} is not a parameter of this operation"
        if spec.get("enum") and value not in spec["enum"]:
            return f"query parameter {name}={value!r} is not one of {spec['enum']}"
        if spec["type"] == "integer" and not re.fullmatch(r"-?\d+", value):
            return f"query parameter {name}={value!r} is not an integer"
        if spec.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return f"query parameter {name}={value!r} is not an RFC 3339 date-time"
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
                return f"query parameter {name}={value!r} is not an RFC 3339 date-time"
    return None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _route(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", path) + "$")


ROUTES = [(m, _route(p), op, body, query, answer) for m, p, op, body, query, answer in OPERATIONS]


class ForgejoStub:
    """One tracker with repositories, issues, comments, labels, pull requests; it sends webhooks to ``hook_url``."""

    def __init__(self, flavor: str = "forgejo", secret: str = SECRET, token: str = TOKEN):
        self.flavor = flavor
        self.secret = secret
        self.token = token
        self.lock = threading.RLock()
        self.repos: dict[str, dict] = {}
        self.next_id = 1000
        self.calls: list[tuple[str, str, dict | None]] = []  # (method, operationId, body) of API calls
        self.times: list[float] = []  # when each of ``calls`` arrived
        self.invalid: list[str] = []  # requests that failed schema validation
        self.down_until = 0.0
        self.drop_webhooks = False
        #: operationId -> called with the answer once the call took effect, before it is sent: a test's way to
        #: crash the client between the tracker's change and the client learning of it
        self.after: dict[str, Callable[[object], None]] = {}
        self.hook_url: str | None = None
        self.deliveries: list[dict] = []  # every webhook sent: headers, body, status answered
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = self.url + ("/api/v1" if flavor == "forgejo" else "")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # --- setup ------------------------------------------------------------------------------------
    def add_repo(self, full_name: str, bare: str | None = None) -> dict:
        owner, name = full_name.split("/")
        repo = {"id": self._id(), "name": name, "full_name": full_name, "owner": self._user(owner),
                "html_url": f"{self.url}/{full_name}", "clone_url": bare or f"{self.url}/{full_name}.git",
                "default_branch": "main", "private": False, "_bare": bare,
                "_issues": {}, "_comments": {}, "_labels": {}, "_pulls": [], "_next_number": 1}
        self.repos[full_name] = repo
        return repo

    def _id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    def _user(self, login: str) -> dict:
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:6], 16)
        return {"id": uid, "login": login, "login_name": "", "source_id": 0, "full_name": login,
                "email": f"{login}@example.invalid", "avatar_url": f"{self.url}/avatars/{uid}", "language": "",
                "is_admin": False, "last_login": "1970-01-01T00:00:00Z", "created": "2024-01-01T00:00:00Z",
                "restricted": False, "active": True, "prohibit_login": False, "location": "", "website": "",
                "description": "", "visibility": "public", "followers_count": 0, "following_count": 0,
                "starred_repos_count": 0}

    def _repo_public(self, repo: dict) -> dict:
        return {k: v for k, v in repo.items() if not k.startswith("_")}

    # --- what people do on the tracker (each sends its webhook) --------------------------------------
    def open_issue(self, user: str, repo: str, title: str, body: str = "", labels: list[str] = (),
                   send: bool = True) -> dict:
        r = self.repos[repo]
        with self.lock:
            now = time.time()
            number = r["_next_number"]
            r["_next_number"] += 1
            issue = {"id": self._id(), "url": f"{self.api_url}/repos/{repo}/issues/{number}",
                     "html_url": f"{self.url}/{repo}/issues/{number}", "number": number, "user": self._user(user),
                     "original_author": "", "original_author_id": 0, "title": title, "body": body, "ref": "",
                     "labels": [self._label(r, n) for n in labels], "milestone": None, "assignee": None,
                     "assignees": None, "state": "open", "is_locked": False, "comments": 0,
                     "created_at": iso(now), "updated_at": iso(now), "closed_at": None, "due_date": None,
                     "assets": [], "pull_request": None, "pin_order": 0,
                     "repository": {"id": r["id"], "name": r["name"], "owner": r["owner"]["login"],
                                    "full_name": repo}}
            r["_issues"][number] = issue
        if send:
            self.webhook("issues", {"action": "opened", "number": number, "issue": issue, "commit_id": ""}, repo,
                         user)
        return issue

    def comment(self, user: str, repo: str, number: int, body: str, send: bool = True) -> dict:
        r = self.repos[repo]
        with self.lock:
            note = self._new_comment(r, number, user, body)
        if send:
            self.webhook("issue_comment", {"action": "created", "issue": r["_issues"][number], "comment": note,
                                           "is_pull": False}, repo, user)
        return note

    def close_issue(self, user: str, repo: str, number: int, send: bool = True) -> dict:
        issue = self.repos[repo]["_issues"][number]
        with self.lock:
            issue.update(state="closed", closed_at=iso(time.time()), updated_at=iso(time.time()))
        if send:
            self.webhook("issues", {"action": "closed", "number": number, "issue": issue, "commit_id": ""}, repo,
                         user)
        return issue

    def reopen_issue(self, user: str, repo: str, number: int, send: bool = True) -> dict:
        issue = self.repos[repo]["_issues"][number]
        with self.lock:
            issue.update(state="open", closed_at=None, updated_at=iso(time.time()))
        if send:
            self.webhook("issues", {"action": "reopened", "number": number, "issue": issue, "commit_id": ""},
                         repo, user)
        return issue

    def add_label(self, user: str, repo: str, number: int, name: str, send: bool = True) -> None:
        r = self.repos[repo]
        issue = r["_issues"][number]
        with self.lock:
            issue["labels"].append(self._label(r, name))
            issue["updated_at"] = iso(time.time())
        if send:
            if self.flavor == "github":
                self.webhook("issues", {"action": "labeled", "number": number, "issue": issue,
                                        "label": self._label(r, name)}, repo, user)
            else:  # Forgejo: X-Forgejo-Event issues, X-Forgejo-Event-Type issue_label
                self.webhook("issues", {"action": "label_updated", "number": number, "issue": issue,
                                        "commit_id": ""}, repo, user, event_type="issue_label")

    def _new_comment(self, r: dict, number: int, user: str, body: str) -> dict:
        now = time.time()
        cid = self._id()
        note = {"id": cid, "html_url": f"{self.url}/{r['full_name']}/issues/{number}#issuecomment-{cid}",
                "pull_request_url": "", "issue_url": f"{self.url}/{r['full_name']}/issues/{number}",
                "user": self._user(user), "original_author": "", "original_author_id": 0, "body": body,
                "assets": [], "created_at": iso(now), "updated_at": iso(now), "_edits": 0, "_t": now}
        r["_comments"][cid] = note
        issue = r["_issues"][number]
        issue["comments"] += 1
        issue["updated_at"] = iso(now)
        return note

    def _label(self, r: dict, name: str) -> dict:
        if name not in r["_labels"]:
            lid = self._id()
            r["_labels"][name] = {"id": lid, "name": name, "exclusive": False, "is_archived": False,
                                  "color": "ededed", "description": "", "url": f"{self.api_url}/labels/{lid}"}
        return r["_labels"][name]

    # --- webhooks ---------------------------------------------------------------------------------
    def webhook(self, event: str, body: dict, repo: str, sender: str, *, secret: str | None = None,
                signed: bool = True, delivery: str | None = None, event_type: str | None = None) -> dict:
        """Send one delivery as the tracker does (unless ``drop_webhooks``); returns its record. Forgejo marshals
        the payload indented by two spaces and signs those exact bytes."""
        payload = dict(body, repository=self._repo_public(self.repos[repo]), sender=self._user(sender))
        raw = json.dumps(_public(payload), indent=2 if self.flavor == "forgejo" else None).encode()
        return self.send_raw(event, raw, secret=secret, signed=signed, delivery=delivery, event_type=event_type)

    def send_raw(self, event: str, raw: bytes, *, secret: str | None = None, signed: bool = True,
                 delivery: str | None = None, event_type: str | None = None) -> dict:
        """POST ``raw`` with the headers the tracker sends. Forgejo (``AddDefaultHeaders``): ``event`` in every
        ``X-*-Event``, the finer ``event_type`` (``issue_label``, ``issue_assign``…) in every ``X-*-Event-Type``;
        without a secret the signature headers are still sent, empty."""
        delivery = delivery or str(uuid.uuid4())
        key = (secret or self.secret).encode() if signed else b""
        sig256 = hmac.new(key, raw, hashlib.sha256).hexdigest() if key else ""
        if self.flavor == "github":
            headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "User-Agent": "GitHub-Hookshot/1"}
            if signed:
                headers["X-Hub-Signature-256"] = f"sha256={sig256}"
        else:
            sig1 = hmac.new(key, raw, hashlib.sha1).hexdigest() if key else ""
            event_type = event_type or event
            headers = {}
            for brand in ("Forgejo", "Gitea", "Gogs"):
                headers.update({f"X-{brand}-Delivery": delivery, f"X-{brand}-Event": event,
                                f"X-{brand}-Event-Type": event_type, f"X-{brand}-Signature": sig256})
            headers.update({"X-Hub-Signature": f"sha1={sig1}", "X-Hub-Signature-256": f"sha256={sig256}",
                            "X-GitHub-Delivery": delivery, "X-GitHub-Event": event, "X-GitHub-Event-Type": event_type,
                            "User-Agent": "Go-http-client/1.1"})
        record = {"event": event, "headers": headers, "body": raw, "status": None, "answer": None}
        self.deliveries.append(record)
        if self.drop_webhooks or not self.hook_url:
            record["status"] = "dropped"
            return record
        resp = requests.post(self.hook_url, data=raw, headers={**headers, "Content-Type": "application/json"},
                             timeout=10)
        record["status"], record["answer"] = resp.status_code, resp.json() if resp.content else None
        return record

    def redeliver(self, record: dict) -> dict:
        """Send a recorded delivery again, byte for byte with the same delivery id (the UI's "redeliver")."""
        resp = requests.post(self.hook_url, data=record["body"],
                             headers={**record["headers"], "Content-Type": "application/json"}, timeout=10)
        return {"status": resp.status_code, "answer": resp.json() if resp.content else None}

    # --- what tests read --------------------------------------------------------------------------
    def issue(self, repo: str, number: int) -> dict:
        return self.repos[repo]["_issues"][number]

    def comments(self, repo: str, number: int, by: str | None = None) -> list[dict]:
        r = self.repos[repo]
        return [c for c in sorted(r["_comments"].values(), key=lambda c: c["id"])
                if c["issue_url"].endswith(f"/issues/{number}") and (by is None or c["user"]["login"] == by)]

    def labels_of(self, repo: str, number: int) -> list[str]:
        return [lb["name"] for lb in self.issue(repo, number)["labels"]]

    def pulls(self, repo: str) -> list[dict]:
        return list(self.repos[repo]["_pulls"])

    def count(self, op: str) -> int:
        return sum(1 for _, o, _ in self.calls if o == op)

    # --- the API ----------------------------------------------------------------------------------
    def _handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, object, dict]:
        parts = urlsplit(raw_path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == "/swagger.v1.json" and method == "GET":
            return 200, document(), {}
        prefix = "/api/v1" if self.flavor == "forgejo" else ""
        if not path.startswith(prefix + "/"):
            return 404, {"message": "not found"}, {}
        path = path[len(prefix):]
        scheme, _, given = headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or given != self.token:
            return 401, {"message": "token is required"}, {}
        forgejo = self.flavor == "forgejo"
        for m, pattern, op, definition, params, answer in ROUTES:
            found = pattern.match(path)
            if m != method or not found:
                continue
            data = None
            if body:
                try:
                    data = json.loads(body)
                except ValueError:
                    return 400, {"message": "invalid JSON"}, {}
            # GitHub's issue labels are names, not Forgejo's label ids: its flavor skips that one definition
            problem = (check_query(params, query) if forgejo else None) or \
                (check(DEFINITIONS[definition], data) if definition and (forgejo or definition != "IssueLabelsOption")
                 else None)
            if problem:
                self.invalid.append(f"{op}: {problem}")
                return 422, {"message": f"[{definition or 'query'}]: {problem}"}, {}
            self.calls.append((method, op, data))
            self.times.append(time.time())
            if time.time() < self.down_until:
                return 503, {"message": "Service Unavailable"}, {}
            repo = self.repos.get(f"{found['owner']}/{found['repo']}")
            if repo is None:
                return 404, {"message": "repository does not exist"}, {}
            with self.lock:
                status, out, headers = getattr(self, "_op_" + op)(repo, found.groupdict(), query, data)
            if op in self.after and status < 300:
                self.after[op](out)
            if forgejo and answer and status < 300:
                wrong = check(answer, _no_nulls(out), STRICT)
                if wrong:  # the stand-in's own answer breaks the document: a fault of the stand-in, reported
                    self.invalid.append(f"answer of {op}: {wrong}")
            return status, out, headers
        return 404, {"message": f"no route {method} {path}"}, {}

    def _page(self, items: list, query: dict, path: str) -> tuple[int, object, dict]:
        size = int(query.get("limit") or query.get("per_page") or 30)
        page = max(1, int(query.get("page") or 1))
        chunk = items[(page - 1) * size: page * size]
        headers = {"X-Total-Count": str(len(items))}
        if page * size < len(items):
            nxt = dict(query, page=str(page + 1))
            prefix = "/api/v1" if self.flavor == "forgejo" else ""
            qs = "&".join(f"{k}={v}" for k, v in nxt.items())
            headers["Link"] = f'<{self.url}{prefix}{path}?{qs}>; rel="next"'
        return 200, [_public(i) for i in chunk], headers

    def _op_issueListIssues(self, r, p, q, data):
        since = q.get("since")
        items = [i for i in r["_issues"].values() if not since or i["updated_at"] >= since.replace("+00:00", "Z")]
        state = q.get("state", "open")
        items = [i for i in items if state == "all" or i["state"] == state]
        return self._page(sorted(items, key=lambda i: i["updated_at"]), q, f"/repos/{r['full_name']}/issues")

    def _op_issueGetRepoComments(self, r, p, q, data):
        since = q.get("since")
        items = [c for c in r["_comments"].values() if not since or c["updated_at"] >= since]
        return self._page(sorted(items, key=lambda c: c["id"]), q, f"/repos/{r['full_name']}/issues/comments")

    def _op_issueGetIssue(self, r, p, q, data):
        issue = r["_issues"].get(int(p["index"]))
        return (200, _public(issue), {}) if issue else (404, {"message": "issue does not exist"}, {})

    def _op_issueEditIssue(self, r, p, q, data):
        issue = r["_issues"].get(int(p["index"]))
        if issue is None:
            return 404, {"message": "issue does not exist"}, {}
        if "assignees" in data:
            issue["assignees"] = [self._user(u) for u in data["assignees"]]
            issue["assignee"] = issue["assignees"][0] if issue["assignees"] else None
        if data.get("state") in ("open", "closed"):
            issue["state"] = data["state"]
            issue["closed_at"] = iso(time.time()) if data["state"] == "closed" else None
        for key in ("title", "body"):
            if key in data:
                issue[key] = data[key]
        issue["updated_at"] = iso(time.time())
        return 201, _public(issue), {}

    def _op_issueCreateComment(self, r, p, q, data):
        if int(p["index"]) not in r["_issues"]:
            return 404, {"message": "issue does not exist"}, {}
        return 201, _public(self._new_comment(r, int(p["index"]), BOT, data["body"])), {}

    def _op_issueEditComment(self, r, p, q, data):
        note = r["_comments"].get(int(p["id"]))
        if note is None:
            return 404, {"message": "comment does not exist"}, {}
        note.update(body=data["body"], updated_at=iso(time.time()))
        note["_edits"] += 1
        return 200, _public(note), {}

    def _op_issueReplaceLabels(self, r, p, q, data):
        issue = r["_issues"].get(int(p["index"]))
        if issue is None:
            return 404, {"message": "issue does not exist"}, {}
        by_id = {lb["id"]: lb for lb in r["_labels"].values()}
        labels = []
        for item in data.get("labels") or []:  # Forgejo: ids (IssueLabelsOption); GitHub: names
            label = by_id.get(item) if self.flavor == "forgejo" else r["_labels"].get(item)
            if label is None and self.flavor == "github":
                label = self._label(r, item)  # GitHub creates labels named on an issue
            if label is None:
                return 422, {"message": f"label {item!r} does not exist"}, {}
            labels.append(label)
        issue["labels"] = labels
        issue["updated_at"] = iso(time.time())
        return 200, labels, {}

    def _op_issueListLabels(self, r, p, q, data):
        return self._page(list(r["_labels"].values()), q, f"/repos/{r['full_name']}/labels")

    def _op_issueCreateLabel(self, r, p, q, data):
        if data["name"] in r["_labels"]:
            return 409, {"message": "label already exists"}, {}
        return 201, self._label(r, data["name"]), {}

    def _op_repoCreatePullRequest(self, r, p, q, data):
        head, base = data.get("head", ""), data.get("base", "")
        bare = r["_bare"]
        if not bare or subprocess.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/{head}"], cwd=bare,
                                      capture_output=True).returncode != 0:
            return 404, {"message": f"head branch {head!r} does not exist"}, {}
        if any(pr["head"]["ref"] == head and pr["state"] == "open" for pr in r["_pulls"]):
            return 409, {"message": "pull request already exists for these targets"}, {}
        sha = subprocess.run(["git", "rev-parse", f"refs/heads/{head}"], cwd=bare, capture_output=True,
                             text=True).stdout.strip()
        number = r["_next_number"]
        r["_next_number"] += 1
        pr = {"id": self._id(), "number": number, "title": data.get("title", ""), "body": data.get("body", ""),
              "state": "open", "merged": False, "html_url": f"{self.url}/{r['full_name']}/pulls/{number}",
              "head": {"label": head, "ref": head, "sha": sha, "repo_id": r["id"]},
              "base": {"label": base, "ref": base, "repo_id": r["id"]},
              "user": self._user(BOT), "created_at": iso(time.time())}
        r["_pulls"].append(pr)
        return 201, pr, {}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, data, headers = stub._handle(self.command, self.path, self.headers, body)
                raw = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _public(obj):
    """A stored object without the stand-in's private keys (``_edits``…)."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def tracker_config(stub: ForgejoStub, repo: str, users=("alice",), remote: str | None = None, **extra) -> dict:
    """An install's ``channels.<flavor>`` section for ``stub`` (the token comes from the environment)."""
    conf = {"repo": repo, "allowed_users": list(users)}
    if remote:
        conf["remote"] = remote
    return {"channels": {stub.flavor: {"api_url": stub.api_url, "repos": [conf],
                                       "webhook_secrets": {repo: stub.secret}, "bot_name": BOT,
                                       "reconcile_interval_sec": 3600, **extra},
                         "delivery": {"max_delay_sec": 1}}}


def start_tracker_channel(env, stub: ForgejoStub, name: str = "tracker"):
    """Run the real ``alter0 channel <flavor>`` process of ``env`` until its first reconciliation ran."""
    from .helpers import BIN, wait_until
    env.env[f"ALTER0_{stub.flavor.upper()}_TOKEN"] = stub.token
    before = stub.count("issueListIssues")
    proc = env.spawn([str(BIN / "alter0"), "channel", stub.flavor], f"{name}-{len(env.procs)}")
    wait_until(lambda: stub.count("issueListIssues") > before or proc.poll() is not None, 30,
               "the tracker channel's first sync")
    assert proc.poll() is None, env.logs()
    return proc
