"""Issue trackers as a user meets them: a Forgejo (or GitHub) stand-in built from the published API document
(tests/support/forgejo_api.py) sends really signed webhooks to the real web front end (gunicorn); the real
``alter0 channel forgejo|github`` process and a real worker turn issues into tasks and write back through the
tracker's REST API; task branches are pushed with real git to a bare repository the stand-in serves."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support.forgejo_api import BOT, ForgejoStub, start_tracker_channel, tracker_config
from support.helpers import free_port, merge, wait_until
from support.web import start_gunicorn

REPO = "acme/app"
FAST = {"router": {"backend": "lexical"}, "task": {"routing_confidence_threshold": 1.0,
                                                   "close_confidence_threshold": 1.0}}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path):
    """A working repository (main, one commit) and an empty bare repository: the tracker's remote."""
    work, bare = tmp_path / "repo", tmp_path / "remote.git"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.name", "Test User")
    git(work, "config", "user.email", "test@example.invalid")
    (work / "README.md").write_text("app\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "initial")
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    return work, bare


@pytest.fixture
def tracker(make_env, repos):
    """Factory: stand-in + install (worker, gunicorn, channel) wired together; returns (env, stub, server)."""
    made = []

    def factory(flavor="forgejo", channel=True, workspace=None, more=None, bind=(), users=("alice",), **extra):
        work, bare = repos
        stub = ForgejoStub(flavor)
        made.append(stub)
        stub.add_repo(REPO, bare=str(bare))
        config = merge(merge(FAST, tracker_config(stub, REPO, users=users, remote=str(bare), **extra)),
                       {"workspace": {"mode": "worktree", "repo": str(work), **(workspace or {})},
                        **(more or {})})
        env = make_env(**config)
        env.env[f"ALTER0_{flavor.upper()}_TOKEN"] = stub.token
        env.start_worker()
        server = start_gunicorn(env, *bind)
        stub.hook_url = f"{server.url}/hooks/{flavor}"
        if channel:
            start_tracker_channel(env, stub)
        env.db()
        return env, stub, server

    yield factory
    for stub in made:
        stub.close()


def bot_comments(stub, number, repo=REPO):
    return stub.comments(repo, number, by=BOT)


def replies(stub, number, marker="echo:", repo=REPO):
    return [c["body"] for c in bot_comments(stub, number, repo) if marker in c["body"] and "job #" in c["body"]]


def wait_replies(env, stub, number, n, marker="echo:", timeout=60):
    return wait_until(lambda: len(replies(stub, number, marker)) >= n and replies(stub, number, marker), timeout,
                      lambda: f"{n} replies on #{number}: {[c['body'] for c in bot_comments(stub, number)]}\n"
                              f"{env.logs()}")


def jobs():
    from alter0.models import Job
    return list(Job.select().order_by(Job.id))


def audit_lines(env) -> list[dict]:
    return [json.loads(line) for path in sorted((env.output / "audit").rglob("command_permission.jsonl"))
            for line in path.read_text().splitlines()]


def test_issue_becomes_task_and_reply_comes_back_with_receipt_and_labels(tracker):
    env, stub, _ = tracker()
    issue = stub.open_issue("alice", REPO, "Add a fix file",
                            "please [[write:fix.txt=fixed]] [[commit:add fix.txt]]", labels=["bug"])
    assert stub.deliveries[-1]["status"] == 202, stub.deliveries[-1]
    [reply] = wait_replies(env, stub, issue["number"], 1)
    [job] = jobs()
    assert job.user_id == job.channel_id == f"forgejo:{REPO}#1" and job.thread_key == f"{REPO}#1"
    assert f"task #{job.task_id} · job #{job.id}" in reply and "echo:" in reply
    assert "#### Receipt" in reply and "✅ verified" in reply and "add fix.txt" in reply
    assert "`fix.txt` +1/-0" in reply and f"alter0/task-{job.task_id}" in reply
    wait_until(lambda: "status:done" in stub.labels_of(REPO, 1), 20, lambda: stub.labels_of(REPO, 1))
    assert set(stub.labels_of(REPO, 1)) == {"bug", "status:done"}  # the user's label kept, one status label
    assert [a["login"] for a in stub.issue(REPO, 1)["assignees"]] == [BOT]
    working = bot_comments(stub, 1)[0]
    assert working["_edits"] >= 1 and "finished job" in working["body"]  # the "working on it" comment edited
    assert len(bot_comments(stub, 1)) == 2 and stub.invalid == []
    status = json.loads(env.cli("status", "--json").stdout)
    [chan] = [c for c in status["channels"] if c["platform"] == "forgejo"]
    assert chan["connected"] and chan["backlog"] == 0


def test_comment_goes_to_the_issue_task_and_closing_either_side_closes_the_other(tracker):
    env, stub, _ = tracker(more={"task": {"scope": "channel"}})  # issues stay apart with channel scope too
    stub.open_issue("alice", REPO, "First issue", "start")
    stub.open_issue("alice", REPO, "Second issue", "other")
    wait_replies(env, stub, 1, 1)
    wait_replies(env, stub, 2, 1)
    stub.comment("alice", REPO, 1, "a follow-up on the first")
    stub.comment("mallory", REPO, 1, "@alter0-bot run rm -rf")  # not on the allowlist: refused, audited
    [_, follow] = wait_replies(env, stub, 1, 2)
    assert "a follow-up on the first" in follow
    first, second, third = jobs()
    assert third.task_id == first.task_id != second.task_id  # hard binding: the issue's task, no router
    time.sleep(1.0)
    assert len(jobs()) == 3
    assert stub.deliveries[-1]["status"] == 403
    assert any(a.get("reason") == "not_allowed" and "mallory" in json.dumps(a) for a in audit_lines(env))
    # closing the issue closes its task
    edits_before_close = stub.count("issueEditIssue")
    stub.close_issue("alice", REPO, 1)
    from alter0.models import Task
    wait_until(lambda: Task.get_by_id(first.task_id).status == "closed", 20, env.logs)
    stub.reopen_issue("alice", REPO, 1)  # reopening it reopens the task, and nothing closes the issue again
    wait_until(lambda: Task.get_by_id(first.task_id).status == "open", 20, env.logs)
    time.sleep(2.0)
    assert stub.issue(REPO, 1)["state"] == "open" and stub.count("issueEditIssue") == edits_before_close
    # closing the task closes its issue
    env.cli("task", "close", str(second.task_id))
    wait_until(lambda: stub.issue(REPO, 2)["state"] == "closed", 20, env.logs)
    assert "status:done" in stub.labels_of(REPO, 2)


def test_lost_webhook_is_recovered_by_reconciliation_and_redelivery_is_ignored(tracker):
    env, stub, _ = tracker()
    stub.drop_webhooks = True
    stub.open_issue("alice", REPO, "Lost issue", "the webhook never arrives")
    for i in range(3):
        stub.open_issue("bob", REPO, f"stranger {i}", "bob is not allowed")
    stub.drop_webhooks = False
    time.sleep(1.0)
    assert jobs() == []
    out = env.cli("tracker", "sync", "--repo", REPO, "--json")
    [report] = json.loads(out.stdout)
    assert report["issues"] == 4 and report["new"] == 4
    wait_replies(env, stub, 1, 1)
    again = json.loads(env.cli("tracker", "sync", "--json").stdout)[0]
    assert again["new"] == 0  # idempotent on the tracker's ids
    assert len(jobs()) == 1 and all(not bot_comments(stub, n) for n in (2, 3, 4))
    refused = [a for a in audit_lines(env) if a.get("source") == "forgejo" and not a.get("allowed")]
    assert len(refused) == 3
    # a webhook delivered twice (same delivery id, same bytes): 409, audited, one job
    record = stub.comment("alice", REPO, 1, "one more thing")
    assert record["id"]
    delivery = stub.deliveries[-1]
    assert delivery["status"] == 202
    wait_replies(env, stub, 1, 2)
    again = stub.redeliver(delivery)
    assert again["status"] == 409 and again["answer"]["error"]["code"] == "replayed"
    time.sleep(1.0)
    assert len(jobs()) == 2
    assert any(a.get("reason") == "replayed" for a in audit_lines(env))


def test_unsigned_badly_signed_oversize_and_unknown_deliveries_are_refused_and_audited(tracker):
    env, stub, server = tracker(channel=False, max_payload_bytes=4096)
    issue = {"number": 9, "title": "x", "body": "", "state": "open", "labels": [], "user": {"login": "alice"}}
    body = {"action": "opened", "number": 9, "issue": issue}
    cases = [
        (stub.webhook("issues", body, REPO, "alice", signed=False), 401, "unsigned"),
        (stub.webhook("issues", body, REPO, "alice", secret="wrong-secret"), 401, "bad_signature"),
        (stub.send_raw("issues", json.dumps({"repository": {"full_name": "evil/repo"}}).encode()), 404,
         "unknown_repository"),
        (stub.webhook("issues", dict(body, issue=dict(issue, body="x" * 5000)), REPO, "alice"), 413, "too_large"),
        (stub.send_raw("issues", b"not json"), 400, "bad_json"),
    ]
    for record, status, code in cases:
        assert record["status"] == status and record["answer"]["error"]["code"] == code, record["answer"]
    reasons = [a.get("reason") for a in audit_lines(env) if a.get("event") == "refused_webhook"]
    assert {"unsigned", "bad_signature", "unknown_repository", "too_large"} <= set(reasons)
    from alter0.models import ChannelEvent
    assert ChannelEvent.select().count() == 0
    shown = (env.cli("config").stdout + env.cli("config", "channels.forgejo.webhook_secrets").stdout
             + json.dumps(audit_lines(env)) + env.logs())
    assert stub.secret not in shown and stub.token not in shown  # secret settings are never shown
    # a good one is recorded and answered at once
    started = time.perf_counter()
    assert stub.webhook("issues", body, REPO, "alice")["status"] == 202
    assert time.perf_counter() - started < 1.0
    assert ChannelEvent.select().count() == 1


def test_webhooks_work_behind_a_public_bind_with_a_token_and_any_host(tracker):
    public = free_port()
    env, stub, server = tracker(channel=False, more={"security": {"api_token": "admin-token-for-this-test"}},
                                bind=("--bind", f"0.0.0.0:{public}"))
    url = f"http://127.0.0.1:{public}"
    assert requests.get(f"{url}/api/jobs", timeout=5).status_code == 401  # the API wants the token
    issue = {"number": 3, "title": "x", "body": "", "state": "open", "labels": [], "user": {"login": "alice"}}
    raw = json.dumps({"action": "opened", "number": 3, "issue": issue,
                      "repository": {"full_name": REPO}, "sender": {"login": "alice"}}).encode()
    sig = hmac.new(stub.secret.encode(), raw, hashlib.sha256).hexdigest()
    resp = requests.post(f"{url}/hooks/forgejo", data=raw, timeout=5, headers={
        "Host": "alter0.example.com", "X-Gitea-Event": "issues", "X-Gitea-Delivery": "d-1",
        "X-Gitea-Signature": sig, "Content-Type": "application/json"})  # Gitea's headers
    assert resp.status_code == 202, resp.text
    assert requests.get(f"{url}/api/status", headers={"Host": "alter0.example.com",
                                                      "Authorization": "Bearer admin-token-for-this-test"},
                        timeout=5).status_code == 403  # the Host guard still holds everywhere else
    from alter0.models import ChannelEvent
    assert [e.event_id for e in ChannelEvent.select()] == [f"{REPO}#3:start"]


def test_tracker_outage_delays_comments_and_delivers_each_exactly_once(tracker):
    env, stub, _ = tracker()
    stub.down_until = time.time() + 8
    for i in range(3):
        stub.open_issue("alice", REPO, f"during the outage {i}", f"message {i}")
    wait_until(lambda: all(j.status == "done" for j in jobs()) and len(jobs()) == 3, 60, env.logs)
    assert all(not bot_comments(stub, n) for n in (1, 2, 3))  # nothing could be written yet
    first = min(j.created_at for j in jobs())  # the channel made it after its start-up sync
    tried = [op for (_, op, _), at in zip(stub.calls, stub.times) if first <= at < stub.down_until]
    assert "issueGetRepoComments" in tried  # a comment's delivery was tried (its look for an earlier one first)
    for n in (1, 2, 3):
        wait_replies(env, stub, n, 1, timeout=60)
    time.sleep(2.0)
    for n in (1, 2, 3):
        assert len(bot_comments(stub, n)) == 2, [c["body"] for c in bot_comments(stub, n)]  # working + reply
        assert len(replies(stub, n)) == 1


def test_pull_request_opened_only_when_the_receipt_is_verified(tracker, repos):
    work, bare = repos
    env, stub, _ = tracker(workspace={"pr": "on_verified", "check_command": ["sh", "-c", "grep -q good out.txt"]})
    stub.open_issue("alice", REPO, "Bad change", "[[write:out.txt=bad]] [[commit:bad change]]")
    [bad] = wait_replies(env, stub, 1, 1)
    assert "⚠️ not verified" in bad and "failed (exit 1)" in bad
    time.sleep(1.5)
    assert stub.pulls(REPO) == [] and subprocess.run(["git", "branch", "--list"], cwd=bare, capture_output=True,
                                                      text=True).stdout.strip() == ""
    stub.comment("alice", REPO, 1, "[[write:out.txt=good]] [[commit:good change]]")
    wait_replies(env, stub, 1, 2)
    wait_until(lambda: stub.pulls(REPO), 30, env.logs)
    [pr] = stub.pulls(REPO)
    task_id = jobs()[0].task_id
    assert pr["head"]["ref"] == f"alter0/task-{task_id}" and pr["base"]["ref"] == "main"
    assert "Closes #1" in pr["body"] and pr["title"] == "good change"
    assert git(bare, "rev-parse", f"refs/heads/alter0/task-{task_id}") == pr["head"]["sha"]
    assert git(bare, "show", f"{pr['head']['sha']}:out.txt") == "good"
    assert stub.invalid == []


def test_github_issue_and_mention_use_the_same_path_with_hub_signature(tracker):
    env, stub, _ = tracker(flavor="github", start_on=["mention"])
    stub.open_issue("alice", REPO, "Quiet issue", "no trigger")
    time.sleep(1.0)
    assert jobs() == []  # opened is not a trigger here
    chat = stub.comment("carol", REPO, 1, "me too, same problem")  # people talking: not work, not a refusal
    assert stub.deliveries[-1]["status"] == 200 and stub.deliveries[-1]["answer"]["status"] == "ignored"
    assert chat["id"] and not any(a.get("event") == "refused_webhook" for a in audit_lines(env))
    stub.comment("alice", REPO, 1, f"@{BOT} please look [[reply:looked at it]]")
    assert stub.deliveries[-1]["headers"]["X-Hub-Signature-256"].startswith("sha256=")
    [reply] = wait_replies(env, stub, 1, 1, marker="looked at it")
    [job] = jobs()
    assert "Issue acme/app#1: Quiet issue" in job.content and "please look" in job.content
    note = {"id": 1, "body": "forged", "user": {"login": "alice"}}
    forged = stub.webhook("issue_comment", {"action": "created", "issue": stub.issue(REPO, 1), "comment": note},
                          REPO, "alice", secret="not-the-secret")
    assert forged["status"] == 401 and forged["answer"]["error"]["code"] == "bad_signature"
    assert len(jobs()) == 1


def test_the_channel_reconciles_on_its_own_and_a_restart_resumes_from_its_cursor(tracker):
    env, stub, _ = tracker(reconcile_interval_sec=2)
    stub.drop_webhooks = True
    stub.open_issue("alice", REPO, "Nobody told alter0", "found by the periodic sync")
    wait_replies(env, stub, 1, 1, timeout=30)
    [proc] = [p for p in env.procs if "channel" in " ".join(map(str, p.args))]
    env.kill(proc)
    stub.comment("alice", REPO, 1, "while the channel was down")
    start_tracker_channel(env, stub)
    wait_replies(env, stub, 1, 2, timeout=30)
    time.sleep(3.0)  # more syncs: nothing new
    assert len(jobs()) == 2 and len(replies(stub, 1)) == 2
    from alter0.models import ChannelState
    cursor = json.loads(ChannelState.get_by_id("forgejo").cursor)
    assert set(cursor) == {REPO}


def test_a_channel_killed_after_the_tracker_took_a_comment_does_not_post_it_again(tracker):
    env, stub, _ = tracker()
    [proc] = [p for p in env.procs if "channel" in " ".join(map(str, p.args))]
    killed = []

    def crash(note):  # the reply is stored; the channel dies before the outbox learns it was
        if "echo:" in note["body"] and not killed:
            env.kill(proc)
            killed.append(note["id"])
    stub.after["issueCreateComment"] = crash
    stub.open_issue("alice", REPO, "Crash after posting", "please answer")
    wait_until(lambda: killed, 60, env.logs)
    from alter0.models import ChannelDelivery
    [row] = ChannelDelivery.select().where(ChannelDelivery.key.startswith("reply:"))
    assert row.state == "pending" and row.attempts == 0  # the outbox does not know the comment was made
    start_tracker_channel(env, stub)
    wait_until(lambda: ChannelDelivery.get_by_id(row.id).state == "delivered", 30, env.logs)
    time.sleep(1.5)
    assert len(replies(stub, 1)) == 1, [c["body"] for c in bot_comments(stub, 1)]
    assert ChannelDelivery.get_by_id(row.id).result_id == str(killed[0])  # later edits target the one made
    assert sum(1 for _, op, body in stub.calls if op == "issueCreateComment" and "echo:" in body["body"]) == 1
    assert "finished job" in bot_comments(stub, 1)[0]["body"] and stub.invalid == []


def test_trigger_label_starts_the_task_and_label_map_reaches_the_agent(tracker):
    env, stub, _ = tracker(start_on=["label"], label_map={"bug": "type: bug", "P1": "priority: high"})
    stub.open_issue("alice", REPO, "Crash on start", "stack trace here", labels=["bug", "P1"])
    assert stub.deliveries[-1]["answer"]["status"] == "ignored"
    time.sleep(1.0)
    assert jobs() == []
    stub.add_label("alice", REPO, 1, "alter0")  # Forgejo's label_updated event
    wait_replies(env, stub, 1, 1)
    stub.add_label("alice", REPO, 1, "later")  # the trigger label is still there: already a task, nothing more
    assert stub.deliveries[-1]["status"] == 200 and stub.deliveries[-1]["answer"]["status"] == "duplicate"
    time.sleep(1.0)
    [job] = jobs()
    assert job.content.startswith("Issue acme/app#1: Crash on start\n\ntype: bug, priority: high\n\nstack trace")


def test_doctor_names_what_a_tracker_channel_lacks(make_env):
    env = make_env(channels={"enabled": ["forgejo"], "forgejo": {
        "repos": [{"repo": "acme/app", "allowed_users": []}]}})
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode != 0
    for problem in ("channels.forgejo.api_url is not set", "channels.forgejo.token is not set",
                    "channels.forgejo.webhook_secrets has no secret for acme/app",
                    "channels.forgejo.repos: acme/app has no allowed_users"):
        assert f"channel forgejo: {problem}" in out.stdout, out.stdout
    bad = make_env(channels={"forgejo": {"repos": [{"repo": "no-slash"}]}})
    out = bad.cli("status", check=False)
    assert out.returncode != 0 and "channels.forgejo.repos" in out.stdout + out.stderr


def test_the_stand_in_serves_its_document_and_refuses_requests_that_break_it():
    stub = ForgejoStub()
    try:
        stub.add_repo(REPO)
        stub.open_issue("alice", REPO, "x", send=False)
        doc = requests.get(f"{stub.url}/swagger.v1.json", timeout=5).json()
        assert doc["paths"]["/repos/{owner}/{repo}/issues/{index}/comments"]["post"]["operationId"] == \
            "issueCreateComment"
        assert doc["definitions"]["CreateIssueCommentOption"]["required"] == ["body"]
        auth = {"Authorization": f"token {stub.token}"}
        url = f"{stub.api_url}/repos/{REPO}/issues/1/comments"
        assert requests.post(url, json={"text": "no body field"}, headers=auth, timeout=5).status_code == 422
        assert requests.post(url, json={"body": 5}, headers=auth, timeout=5).status_code == 422
        assert requests.post(url, json={"body": "ok"}, timeout=5).status_code == 401
        assert requests.post(url, json={"body": "ok"}, headers=auth, timeout=5).status_code == 201
        assert len(stub.invalid) == 2
        # copied from Forgejo/Gitea's document: IssueLabelsOption takes label ids, not names
        assert doc["x-excerpt-of"]["commit"] == "67ce9ca11034c00ea81f36f0e574529079534071"
        assert doc["definitions"]["IssueLabelsOption"]["properties"]["labels"]["items"]["type"] == "integer"
        labels = f"{stub.api_url}/repos/{REPO}/issues/1/labels"
        assert requests.put(labels, json={"labels": ["bug"]}, headers=auth, timeout=5).status_code == 422
        made = requests.post(f"{stub.api_url}/repos/{REPO}/labels", json={"name": "bug", "color": "#ee0701"},
                             headers=auth, timeout=5)
        assert made.status_code == 201
        put = requests.put(labels, json={"labels": [made.json()["id"]]}, headers=auth, timeout=5)
        assert put.status_code == 200 and [lb["name"] for lb in put.json()] == ["bug"]
        # query parameters as the operation documents them
        issues = f"{stub.api_url}/repos/{REPO}/issues"
        assert requests.get(issues, params={"state": "all", "type": "issues", "since": "2024-01-02T03:04:05Z",
                                            "limit": 50, "page": 1}, headers=auth, timeout=5).status_code == 200
        for bad in ({"state": "any"}, {"since": "yesterday"}, {"per_page": 50}, {"limit": "many"}):
            assert requests.get(issues, params=bad, headers=auth, timeout=5).status_code == 422, bad
        assert len(stub.invalid) == 7 and not [i for i in stub.invalid if i.startswith("answer of")]
        # a label change is delivered as Forgejo sends it: event issues, event type issue_label, signed bytes
        record = stub.add_label("alice", REPO, 1, "bug") or stub.deliveries[-1]
        h = record["headers"]
        assert (h["X-Forgejo-Event"], h["X-Gitea-Event"], h["X-Forgejo-Event-Type"]) == \
            ("issues", "issues", "issue_label")
        sig = hmac.new(stub.secret.encode(), record["body"], hashlib.sha256).hexdigest()
        assert h["X-Forgejo-Signature"] == h["X-Gitea-Signature"] == sig and h["X-Hub-Signature-256"] == f"sha256={sig}"
        assert h["X-Forgejo-Delivery"] == h["X-Gitea-Delivery"] and json.loads(record["body"])["commit_id"] == ""
    finally:
        stub.close()
