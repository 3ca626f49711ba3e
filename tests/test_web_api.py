"""The JSON API through the Flask test client: every endpoint, each bad-input case, the token rule."""

from __future__ import annotations

import os

import pytest

from alter0.models import Job, Worker, now
from alter0.principals import create_token
from support.helpers import wait_status
from support.web import ndjson

USER = {"user_id": "alice"}


def submit(client, content="hello [[reply:hi there]]", **extra):
    r = client.post("/api/jobs", json={"content": content, **USER, **extra})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["job_id"]


def settled(client, job_id) -> dict:
    """The job's view once it finished (or after 20 s)."""
    return wait_status(lambda: client.get(f"/api/jobs/{job_id}").get_json(), timeout=20, interval=0.05)


def assert_error(r, status, code=None):
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert set(body["error"]) >= {"code", "message"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body


# --- health, metrics -------------------------------------------------------------------------------

def test_health_reports_the_database(client):
    assert client.get("/health").get_json()["db"] is True


def test_metrics_expose_jobs_latency_retries_failures_backlog(client):
    job_id = submit(client)
    settled(client, job_id)
    text = client.get("/metrics").get_data(as_text=True)
    for family in ("alter0_jobs", "alter0_stage_duration_seconds", "alter0_retries_total", "alter0_job_failures",
                   "alter0_queue_backlog"):
        assert f"# TYPE {family} " in text
    assert 'alter0_jobs{state="done"} 1' in text
    assert 'alter0_stage_duration_seconds_count{phase="total"} 1' in text
    assert 'alter0_stage_duration_seconds_bucket{phase="total",le="+Inf"} 1' in text


# --- sync, stream ----------------------------------------------------------------------------------

def test_sync_message_returns_the_reply(client):
    r = client.post("/api/message", json={"content": "look at the build [[reply:looking into it]]", **USER})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["response"] == "looking into it" and body["decision"] == "new" and isinstance(body["closed"], bool)
    assert body["task_id"] and body["job_id"]


def test_sync_timeout_is_504_with_the_job_id_and_the_job_goes_on(app, client):
    app.rt.cfg = app.rt.cfg.with_values(web__sync_timeout_sec=0.2)
    r = client.post("/api/message", json={"content": "slow [[sleep:1]]", **USER})
    body = assert_error(r, 504, "timeout")
    assert r.headers["Location"] == f"/api/jobs/{body['job_id']}"
    assert settled(client, body["job_id"])["status"] == "done"


def test_sync_failed_job_is_502_with_its_kind(client):
    r = client.post("/api/message", json={"content": "break [[exit:3]]", **USER})
    body = assert_error(r, 502, "job_failed")
    assert body["error"]["kind"] == "exit_error"


def test_stream_sends_progress_then_chunks_then_done(client):
    reply = "x" * 25
    r = client.post("/api/message?stream=1&chunk_size=10", json={"content": f"go [[reply:{reply}]]", **USER})
    assert r.status_code == 200 and r.mimetype == "application/x-ndjson"
    lines = ndjson(r.get_data(as_text=True))
    types = [line["type"] for line in lines]
    assert "routed" in types and "state" in types
    assert types.index("routed") < types.index("chunk")
    chunks = [line for line in lines if line["type"] == "chunk"]
    assert [c["chunk"] for c in chunks] == ["x" * 10, "x" * 10, "x" * 5]
    assert all(c["total"] == 3 for c in chunks) and [c["index"] for c in chunks] == [0, 1, 2]
    done = lines[-1]
    assert done["type"] == "done" and done["total"] == 3 and done["decision"] == "new"
    assert set(done) >= {"job_id", "task_id", "decision", "closed", "total"}
    routed = lines[types.index("routed")]
    assert routed["task_id"] == done["task_id"] and routed["confidence"] is not None


def test_stream_default_chunk_is_1200_characters(client):
    r = client.post("/api/message?stream=1", json={"content": f"long [[reply:{'y' * 2500}]]", **USER})
    chunks = [line for line in ndjson(r.get_data(as_text=True)) if line["type"] == "chunk"]
    assert [len(c["chunk"]) for c in chunks] == [1200, 1200, 100]


def test_stream_of_a_failed_job_ends_with_error_and_done(client):
    r = client.post("/api/message?stream=1", json={"content": "break [[exit:4]]", **USER})
    lines = ndjson(r.get_data(as_text=True))
    assert any(line["type"] == "error" and line["kind"] == "exit_error" for line in lines)
    assert lines[-1]["type"] == "done" and lines[-1]["status"] == "failed" and lines[-1]["total"] == 0


@pytest.mark.parametrize("query", ["stream=1&chunk_size=0", "stream=1&chunk_size=4001", "stream=1&chunk_size=abc",
                                   "stream=maybe"])
def test_stream_options_are_checked_before_submitting(client, query):
    assert_error(client.post(f"/api/message?{query}", json={"content": "x", **USER}), 400)
    assert Job.select().count() == 0


# --- async jobs ------------------------------------------------------------------------------------

def test_async_submit_poll_and_list(client):
    r = client.post("/api/jobs", json={"content": "one [[reply:1]]", **USER})
    assert r.status_code == 202 and r.headers["Location"] == f"/api/jobs/{r.get_json()['job_id']}"
    first = r.get_json()["job_id"]
    view = settled(client, first)
    assert view["status"] == "done" and view["response"] == "1" and view["decision"] == "new"
    assert set(view["timings"]) >= {"created_at", "finished_at"} and view["error"] is None
    ids = [first] + [submit(client, f"more {i}") for i in range(3)]
    page = client.get("/api/jobs?limit=2").get_json()
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2] and page["next_cursor"] == ids[2]
    page2 = client.get(f"/api/jobs?limit=2&cursor={page['next_cursor']}").get_json()
    assert [j["job_id"] for j in page2["jobs"]] == ids[1::-1]
    assert [j["job_id"] for j in client.get("/api/jobs?status=done&limit=500").get_json()["jobs"]][-1] == first
    task_id = view["task_id"]
    assert all(j["task_id"] == task_id for j in client.get(f"/api/jobs?task_id={task_id}").get_json()["jobs"])


def test_idempotency_key_returns_the_first_job(client):
    body = {"content": "deploy [[reply:ok]]", **USER}
    a = client.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    b = client.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    c = client.post("/api/jobs", json=dict(body, request_id="k-1"))
    assert a.get_json()["job_id"] == b.get_json()["job_id"] == c.get_json()["job_id"]
    assert a.get_json()["created"] is True and b.get_json()["created"] is False
    s = client.post("/api/message", json=body, headers={"Idempotency-Key": "k-1"})
    assert s.get_json()["job_id"] == a.get_json()["job_id"]
    assert Job.select().count() == 1
    assert_error(client.post("/api/jobs", json=dict(body, content="other"), headers={"Idempotency-Key": "k-1"}),
                 409, "conflict")


def test_events_follow_from_a_cursor_as_ndjson_and_sse(client):
    job_id = submit(client)
    settled(client, job_id)
    events = ndjson(client.get(f"/api/jobs/{job_id}/events").get_data(as_text=True))
    assert events[0]["kind"] == "submitted" and events[-1] == {"kind": "end", "job_id": job_id, "status": "done"}
    seqs = [e["seq"] for e in events[:-1]]
    assert seqs == sorted(seqs)
    later = ndjson(client.get(f"/api/jobs/{job_id}/events?after={seqs[2]}").get_data(as_text=True))
    assert [e["seq"] for e in later[:-1]] == seqs[3:]
    sse = client.get(f"/api/jobs/{job_id}/events", headers={"Accept": "text/event-stream",
                                                            "Last-Event-ID": str(seqs[-2])})
    assert sse.mimetype == "text/event-stream"
    text = sse.get_data(as_text=True)
    assert f"id: {seqs[-1]}\n" in text and f"id: {seqs[-2]}\n" not in text and "event: end\n" in text


def test_events_of_a_running_job_stop_at_the_timeout(app, client):
    app.queue.pause()
    job_id = submit(client)
    lines = ndjson(client.get(f"/api/jobs/{job_id}/events?timeout=0.2").get_data(as_text=True))
    assert lines[-1] == {"kind": "timeout", "job_id": job_id, "status": "queued"}
    lines = ndjson(client.get(f"/api/jobs/{job_id}/events?follow=0").get_data(as_text=True))
    assert lines[0]["kind"] == "submitted" and lines[-1]["kind"] == "timeout"


def test_cancel_is_idempotent_and_409_once_finished(app, client):
    app.queue.pause()
    job_id = submit(client)
    first = client.post(f"/api/jobs/{job_id}/cancel")
    assert first.status_code == 200 and first.get_json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job_id}/cancel").get_json()["status"] == "cancelled"
    app.queue.resume()
    retried = client.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 202 and retried.get_json()["status"] == "queued"
    assert settled(client, job_id)["status"] == "done"
    assert_error(client.post(f"/api/jobs/{job_id}/cancel"), 409, "conflict")
    assert_error(client.post(f"/api/jobs/{job_id}/retry"), 409, "conflict")


def test_cancel_of_a_running_job_asks_the_worker(app, client):
    app.queue.pause()
    job_id = submit(client)
    Job.update(status="generating", lease_owner="w1", lease_expires=now() + 60).where(Job.id == job_id).execute()
    view = client.post(f"/api/jobs/{job_id}/cancel").get_json()
    assert view["status"] == "generating" and view["cancel_requested"] is True


# --- tasks -----------------------------------------------------------------------------------------

def test_tasks_list_detail_close_reopen(client):
    r = client.post("/api/message", json={"content": "plan the release [[reply:plan ready]]", **USER})
    task_id = r.get_json()["task_id"]
    listed = client.get("/api/tasks?status=open").get_json()["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    detail = client.get(f"/api/tasks/{task_id}").get_json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["memory"]["turn_count"] == 2
    decision = detail["decisions"][0]
    assert decision["decision"] == "new" and "route_confidence" in decision and "close_reason" in decision
    closed = client.post(f"/api/tasks/{task_id}/close", json={"reason": "shipped"}).get_json()
    assert closed["status"] == "closed" and closed["close_reason"] == "shipped" and closed["closed_by"] == "manual"
    assert client.get("/api/tasks?status=open").get_json()["tasks"] == []
    assert client.post(f"/api/tasks/{task_id}/close").get_json()["status"] == "closed"
    assert client.post(f"/api/tasks/{task_id}/reopen").get_json()["status"] == "open"


def test_message_to_an_explicit_task(client):
    first = client.post("/api/message", json={"content": "alpha [[reply:a]]", **USER}).get_json()
    body = {"content": "totally unrelated cooking question [[reply:b]]", "task_id": first["task_id"], **USER}
    second = client.post("/api/message", json=body).get_json()
    assert second["task_id"] == first["task_id"] and second["decision"] == "existing"


# --- commands --------------------------------------------------------------------------------------

def test_commands_share_the_cli_interpreter_and_admin_rules(client):
    help_ = client.post("/api/command", json={"command": "/help", **USER})
    assert help_.status_code == 200 and "/task list" in help_.get_json()["text"]
    new = client.post("/api/command", json={"command": "/task new release notes", **USER}).get_json()
    assert new["data"]["title"] == "release notes"
    assert client.post("/api/command", json={"command": "/task current", **USER}).get_json()["data"] == {
        "task_id": new["data"]["id"]}
    assert_error(client.post("/api/command", json={"command": "/executor command", **USER}), 403, "forbidden")
    assert_error(client.post("/api/command", json={"command": "/nope", **USER}), 400, "bad_input")
    assert_error(client.post("/api/command", json={"command": "no slash", **USER}), 400, "bad_input")
    # naming an admin id proves nothing: over HTTP an admin command needs an admin token
    claimed = client.post("/api/command", json={"command": "/executor", "user_id": "admin"})
    assert_error(claimed, 403, "forbidden")
    assert "alter0 token create --user YOU --admin" in claimed.get_json()["error"]["message"]
    assert client.get("/api/status").get_json()["audit_tail"] is None  # not shown to non-admins
    _, token = create_token("root", admin=True)
    admin = {"Authorization": f"Bearer {token}"}
    ok = client.post("/api/command", json={"command": "/executor", "user_id": "admin"}, headers=admin)
    assert ok.status_code == 200
    audit = client.get("/api/status", headers=admin).get_json()["audit_tail"]
    assert [(a["user_id"], a["allowed"]) for a in audit[:3]] == [("admin", True), ("admin", False), ("alice", False)]
    # once a token exists, a tokenless request is refused
    assert_error(client.post("/api/command", json={"command": "/help", **USER}), 401, "unauthorized")


# --- status ----------------------------------------------------------------------------------------

def test_status_snapshot_shows_stale_workers_down(client):
    Worker.create(id="old", host="elsewhere", pid=1, last_beat=now() - 120, state="running")
    Worker.create(id="fresh", host="elsewhere", pid=2, last_beat=now(), state="running")
    s = client.get("/api/status").get_json()
    assert set(s) >= {"gateway", "backlog", "workers", "in_flight", "executors", "maintenance", "audit_tail",
                      "git_revision"}
    health = {w["id"]: w["alive"] for w in s["workers"]}
    assert health == {"old": False, "fresh": True}
    assert set(s["backlog"]["by_stage"]) == {"route", "generate", "close"}
    assert s["executors"]["available"]["command"]["available"] is True


def test_status_snapshot_shows_each_chat_channel(client):
    from alter0.channels import outbox, state
    from alter0.channels.base import Outgoing
    state.started("telegram")
    state.polled("telegram", "1001", got_events=True)
    state.failed("telegram", "delivery reply:x delayed 1.0s: sendMessage: 429 Too Many Requests", disconnected=False)
    outbox.enqueue("telegram", [Outgoing("reply:telegram:1:0:0", "sendMessage", {"chat_id": 1, "text": "hi"})])
    # Only channels that are enabled, configured or seen are listed: Matrix and the trackers, not set up, are not.
    [chan] = client.get("/api/status").get_json()["channels"]
    assert chan["platform"] == "telegram" and chan["connected"] and chan["backlog"] == 1
    assert chan["last_event_at"] and "429" in chan["last_error"]
    page = client.get("/status").get_data(as_text=True)
    assert "<td>telegram</td>" in page and "connected" in page and "429 Too Many Requests" in page


# --- bad input never gives a 500 -------------------------------------------------------------------

BAD_BODIES = [
    ("malformed JSON", b'{"content": "x", ', "bad_json", 400),
    ("array body", b'["x"]', "bad_json", 400),
    ("empty body", b"", "bad_json", 400),
    ("content is a number", {"content": 5, "user_id": "u"}, "bad_input", 400),
    ("content missing", {"user_id": "u"}, "bad_input", 400),
    ("content empty", {"content": "  ", "user_id": "u"}, "bad_input", 400),
    ("user_id missing", {"content": "x"}, "bad_input", 400),
    ("user_id is a list", {"content": "x", "user_id": ["u"]}, "bad_input", 400),
    ("user_id too long", {"content": "x", "user_id": "u" * 201}, "bad_input", 400),
    ("channel_id is a number", {"content": "x", "user_id": "u", "channel_id": 3}, "bad_input", 400),
    ("task_id not a number", {"content": "x", "user_id": "u", "task_id": "abc"}, "bad_input", 400),
    ("task_id a bool", {"content": "x", "user_id": "u", "task_id": True}, "bad_input", 400),
    ("task_id negative", {"content": "x", "user_id": "u", "task_id": -1}, "bad_input", 400),
    ("task_id superscript digit", {"content": "x", "user_id": "u", "task_id": "²"}, "bad_input", 400),
    ("task_id out of range", {"content": "x", "user_id": "u", "task_id": 10**30}, "bad_input", 400),
    ("task_id unknown", {"content": "x", "user_id": "u", "task_id": 999}, "not_found", 404),
    ("request_id a number", {"content": "x", "user_id": "u", "request_id": 7}, "bad_input", 400),
    ("content over the limit", {"content": "é" * 40000, "user_id": "u"}, "too_large", 413),
]


@pytest.mark.parametrize("path", ["/api/message", "/api/jobs"])
@pytest.mark.parametrize("case,body,code,status", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_submissions_are_4xx(client, path, case, body, code, status):
    if isinstance(body, bytes):
        r = client.post(path, data=body, content_type="application/json")
    else:
        r = client.post(path, json=body)
    assert_error(r, status, code)
    assert Job.select().count() == 0


def test_body_far_over_the_limit_is_413_before_parsing(client):
    assert_error(client.post("/api/jobs", data=b"x" * (65536 * 7 + 65536), content_type="application/json"), 413)


def test_content_limit_is_configurable(make_web_app):
    small = make_web_app(task__max_content_bytes=10).test_client()
    assert_error(small.post("/api/jobs", json={"content": "x" * 11, **USER}), 413, "too_large")
    assert small.post("/api/jobs", json={"content": "x" * 10, **USER}).status_code == 202


@pytest.mark.parametrize("method,path,status", [
    ("get", "/api/jobs/999", 404), ("get", "/api/jobs/abc", 404), ("get", "/api/jobs/99999999999999999999999", 404),
    ("get", "/api/jobs/%C2%B2", 404), ("get", "/api/jobs/999/events", 404), ("post", "/api/jobs/999/cancel", 404),
    ("post", "/api/jobs/999/retry", 404), ("get", "/api/tasks/999", 404), ("get", "/api/tasks/x", 404),
    ("post", "/api/tasks/999/close", 404), ("post", "/api/tasks/999/reopen", 404),
    ("get", "/api/nothing", 404), ("delete", "/api/jobs", 405), ("get", "/api/message", 405),
    ("get", "/api/jobs?status=bogus", 400), ("get", "/api/jobs?limit=0", 400), ("get", "/api/jobs?limit=x", 400),
    ("get", "/api/jobs?cursor=-1", 400), ("get", "/api/jobs?task_id=x", 400), ("get", "/api/tasks?status=x", 400),
    ("get", "/api/tasks?limit=0", 400), ("get", "/api/jobs/1/events?format=xml", 404),
])
def test_bad_ids_and_queries_are_4xx(client, method, path, status):
    r = getattr(client, method)(path)
    assert_error(r, status)


def test_bad_event_options_on_a_real_job(client):
    job_id = submit(client)
    for query in ("format=xml", "after=-1", "after=x", "timeout=nan", "follow=perhaps"):
        assert_error(client.get(f"/api/jobs/{job_id}/events?{query}"), 400)


@pytest.mark.parametrize("body", [{"command": 3, "user_id": "u"}, {"command": "/help"},
                                  {"command": "/help", "user_id": " "},
                                  {"command": "/help", "user_id": "u", "channel_id": []}, [1]])
def test_bad_commands_are_400(client, body):
    assert_error(client.post("/api/command", json=body), 400)


def test_bad_close_reason_is_400(client):
    task_id = client.post("/api/message", json={"content": "x [[reply:y]]", **USER}).get_json()["task_id"]
    assert_error(client.post(f"/api/tasks/{task_id}/close", json={"reason": 5}), 400)
    assert_error(client.post(f"/api/tasks/{task_id}/close", data=b"{", content_type="application/json"), 400)


# --- the token rule --------------------------------------------------------------------------------

API_CALLS = [("get", "/api/jobs"), ("post", "/api/jobs"), ("post", "/api/message"), ("get", "/api/jobs/1"),
             ("get", "/api/jobs/1/events"), ("post", "/api/jobs/1/cancel"), ("post", "/api/jobs/1/retry"),
             ("get", "/api/tasks"), ("get", "/api/tasks/1"), ("post", "/api/tasks/1/close"),
             ("post", "/api/tasks/1/reopen"), ("post", "/api/command"), ("get", "/api/status"),
             ("get", "/api/openapi.json"), ("get", "/metrics")]


@pytest.fixture
def token_client(make_web_app):
    return make_web_app(security__api_token="s3cret").test_client()


@pytest.mark.parametrize("method,path", API_CALLS)
def test_every_api_call_needs_the_token(token_client, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        r = getattr(token_client, method)(path, json={}, headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_right_token_opens_the_api_and_health_stays_open(token_client):
    auth = {"Authorization": "Bearer s3cret"}
    assert token_client.get("/api/status", headers=auth).status_code == 200
    assert token_client.post("/api/jobs", json={"content": "x", **USER}, headers=auth).status_code == 202
    assert token_client.get("/health").status_code == 200


def test_the_token_can_come_from_the_environment(make_web_app, monkeypatch):
    monkeypatch.setenv("ALTER0_API_TOKEN", "from-env")
    c = make_web_app(environ=os.environ).test_client()
    assert c.get("/api/status").status_code == 401
    assert c.get("/api/status", headers={"Authorization": "Bearer from-env"}).status_code == 200


@pytest.mark.parametrize("bind,ok", [("127.0.0.1:8080", True), ("localhost:8080", True), ("[::1]:8080", True),
                                     ("unix:/tmp/a0.sock", True), ("0.0.0.0:8080", False), ("[::]:8080", False),
                                     ("10.1.2.3:80", False)])
def test_non_loopback_bind_needs_a_token(bind, ok):
    from alter0.bind import check_bind
    from alter0.errors import ConfigError
    check_bind([bind], "tok")
    if ok:
        check_bind([bind], "")
    else:
        with pytest.raises(ConfigError, match="without an API token"):
            check_bind([bind], "")
