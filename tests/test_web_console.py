"""The web console through the Flask test client: pages render, forms need CSRF, buttons do what they say."""

from __future__ import annotations

import re

import pytest

from alter0.models import Job, Worker, now
from support.helpers import wait_until
from support.web import csrf_of, ndjson


def done_job(client, content="hello [[reply:hi]]", user="local"):
    body = client.post("/api/message", json={"content": content, "user_id": user}).get_json()
    assert body["status"] == "done", body
    return body


@pytest.mark.parametrize("path", ["/", "/tasks", "/tasks?status=closed", "/tasks?status=all", "/jobs",
                                  "/jobs?partial=1", "/status"])
def test_pages_render(client, path):
    done_job(client)
    r = client.get(path)
    assert r.status_code == 200 and r.mimetype == "text/html"


def test_task_and_job_pages_show_decisions_memory_and_timeline(client):
    body = done_job(client, "ship the docs [[reply:docs shipped]]")
    task = client.get(f"/tasks/{body['task_id']}").get_data(as_text=True)
    assert "ship the docs" in task and "docs shipped" in task and "Memory snapshot" in task
    assert "Close task" in task and "no open task in scope" in task  # the routing reason
    job = client.get(f"/jobs/{body['job_id']}").get_data(as_text=True)
    assert "Timeline" in job and "stage.finished" in job


def test_unknown_ids_render_a_404_page(client):
    for path in ("/tasks/999", "/jobs/999", "/tasks/x"):
        r = client.get(path)
        assert r.status_code == 404 and "not_found" in r.get_data(as_text=True)


def test_posts_without_csrf_are_refused(client):
    body = done_job(client)
    for path in (f"/tasks/{body['task_id']}/close", f"/jobs/{body['job_id']}/retry", "/user", "/"):
        assert client.post(path, data={}).status_code == 400
        assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert client.post("/chat/send", json={"content": "hi"}, headers={"Accept": "application/json"}).status_code == 400
    assert client.get(f"/api/tasks/{body['task_id']}").get_json()["status"] == "open"


def test_close_and_reopen_a_task_with_the_buttons(client):
    body = done_job(client)
    token = csrf_of(client)
    r = client.post(f"/tasks/{body['task_id']}/close", data={"csrf_token": token}, follow_redirects=True)
    assert r.status_code == 200 and f"task #{body['task_id']} closed" in r.get_data(as_text=True)
    assert client.get(f"/api/tasks/{body['task_id']}").get_json()["closed_by"] == "manual"
    client.post(f"/tasks/{body['task_id']}/reopen", data={"csrf_token": token})
    assert client.get(f"/api/tasks/{body['task_id']}").get_json()["status"] == "open"


def test_cancel_and_retry_from_the_jobs_page(app, client):
    app.queue.pause()
    job_id = client.post("/api/jobs", json={"content": "wait", "user_id": "u"}).get_json()["job_id"]
    page = client.get("/jobs").get_data(as_text=True)
    assert f'action="/jobs/{job_id}/cancel"' in page
    token = csrf_of(client)
    r = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token, "next": "/jobs"})
    assert r.status_code == 302 and r.headers["Location"] == "/jobs"
    assert Job.get_by_id(job_id).status == "cancelled"
    page = client.get("/jobs?partial=1").get_data(as_text=True)
    assert f'action="/jobs/{job_id}/retry"' in page
    r = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "cancelled" in r.get_data(as_text=True)  # idempotent, flashed
    app.queue.resume()
    client.post(f"/jobs/{job_id}/retry", data={"csrf_token": token, "next": "//evil.example/"})
    wait_until(lambda: Job.get_by_id(job_id).status == "done", 20, f"job {job_id} to be done after its retry")
    r = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "already finished" in r.get_data(as_text=True)


def test_chat_send_streams_a_message_and_runs_commands(client):
    token = csrf_of(client)
    headers = {"X-CSRF-Token": token, "Accept": "application/json"}
    r = client.post("/chat/send", json={"content": "build it [[reply:built]]"}, headers=headers)
    lines = ndjson(r.get_data(as_text=True))
    assert lines[-1]["type"] == "done" and [x["chunk"] for x in lines if x["type"] == "chunk"] == ["built"]
    task_id = lines[-1]["task_id"]
    used = client.post("/chat/send", json={"content": f"/task use {task_id}"}, headers=headers).get_json()
    assert used == {"type": "command", "text": f"your messages now go to task #{task_id}",
                    "data": {"task_id": task_id}}
    assert f'<option value="{task_id}" selected>' in client.get("/").get_data(as_text=True)
    bad = client.post("/chat/send", json={"content": "/task use 999"}, headers=headers)
    assert bad.status_code == 404 and bad.get_json()["error"]["code"] == "not_found"


def test_chat_works_without_javascript(client):
    token = csrf_of(client)
    page = client.post("/", data={"csrf_token": token, "content": "plain form [[reply:form reply]]"})
    assert page.status_code == 200 and "form reply" in page.get_data(as_text=True)
    page = client.post("/", data={"csrf_token": token, "content": "/task list"})
    assert "plain form" in page.get_data(as_text=True)


def test_the_console_user_can_be_changed(client):
    token = csrf_of(client)
    client.post("/user", data={"csrf_token": token, "user_id": "bob"})
    assert 'value="bob"' in client.get("/").get_data(as_text=True)
    client.post("/chat/send", json={"content": "as bob [[reply:ok]]"}, headers={"X-CSRF-Token": token})
    assert Job.select().order_by(Job.id.desc()).first().user_id == "bob"


def test_status_page_marks_a_silent_worker_down(client):
    Worker.create(id="w-old", host="elsewhere", pid=1, last_beat=now() - 60, state="running")
    Worker.create(id="w-new", host="elsewhere", pid=2, last_beat=now(), state="running")
    page = client.get("/status").get_data(as_text=True)
    rows = dict(re.findall(r"<td>(w-\w+)</td><td><span class=\"badge (\w+)\"", page))
    assert rows == {"w-old": "down", "w-new": "up"}


def test_with_a_token_the_console_asks_to_log_in(make_web_app):
    c = make_web_app(security__api_token="s3cret").test_client()
    r = c.get("/jobs")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    login = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert "wrong token" in c.post("/login", data={"csrf_token": token, "token": "nope"}).get_data(as_text=True)
    r = c.post("/login?next=/jobs", data={"csrf_token": token, "token": "s3cret"})
    assert r.status_code == 302 and r.headers["Location"] == "/jobs"
    assert c.get("/jobs").status_code == 200
    c.post("/logout", data={"csrf_token": csrf_of(c)})
    assert c.get("/jobs").status_code == 302


def test_pages_are_phone_friendly(client):
    page = client.get("/").get_data(as_text=True)
    assert 'name="viewport"' in page
    css = client.get("/static/style.css").get_data(as_text=True)
    assert "@media (max-width: 640px)" in css
