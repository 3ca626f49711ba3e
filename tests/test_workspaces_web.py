"""Workspaces on the web, against a real worker and gunicorn: the task page's Diff view in real headless Chromium
(files collapsible and highlighted, out-of-band changes shown, a clean merge from the console, a conflicting one
refused with the conflict shown, CSRF required), and the HTTP API (diff, merge, discard, receipts, busy reject)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from support.helpers import merge, wait_until
from support.web import start_gunicorn
from test_browser import page, shot  # noqa: F401  (the Chromium page fixture)
from test_workspaces import FAST, git, repo  # noqa: F401  (the git repository fixture)


@pytest.fixture
def ws_server(make_env, repo):  # noqa: F811
    env = make_env(**merge(FAST, {"workspace": {"mode": "worktree", "repo": str(repo)}, "web": {"sync_timeout_sec": 30}}))
    env.start_worker()
    return start_gunicorn(env)  # make_env stops the worker and gunicorn after the test


def send(server, content: str) -> dict:
    body = requests.post(server.url + "/api/message", json={"content": content, "user_id": "local"}, timeout=60).json()
    assert "task_id" in body, body
    return body


def test_diff_view_shows_files_then_merges_from_the_console(ws_server, page, repo):  # noqa: F811
    first = send(ws_server, "A [[write:shared.txt=alpha\\nFROM-A\\ngamma\\n]] [[write:tool.py=def f():\\n    return 1\\n]] "
                            "[[commit:A edits]]")
    second = send(ws_server, "B [[write:shared.txt=alpha\\nFROM-B\\ngamma\\n]] [[commit:B edits]]")
    page.goto(f"{ws_server.url}/tasks/{first['task_id']}")
    assert page.locator("#receipts tr[data-job] .badge").inner_text() == "verified"
    files = page.locator("#diff details.diff-file")
    assert files.count() == 2 and "shared.txt" in files.nth(0).locator("summary").inner_text()
    assert page.locator("#diff .d-add", has_text="+FROM-A").count() == 1
    assert page.locator("#diff .tok-k", has_text="def").count() >= 1  # highlighted without a build step
    files.nth(1).locator("summary").click()  # collapsible
    assert files.nth(1).get_attribute("open") is None
    shot(page, "task-diff")
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Merge into main").click()
    page.locator(".flash.ok", has_text=f"task #{first['task_id']}: merged").wait_for()
    assert (repo / "shared.txt").read_text() == "alpha\nFROM-A\ngamma\n"
    # the second task now conflicts: refused, the conflict shown, nothing changed
    page.goto(f"{ws_server.url}/tasks/{second['task_id']}")
    assert "main moved on by 1 commit(s)" in page.locator("#diff .out-of-band").inner_text()
    head = git(repo, "rev-parse", "HEAD")
    page.get_by_role("button", name="Merge into main").click()
    page.locator(".flash.error", has_text="shared.txt").wait_for()
    assert "CONFLICT" in page.locator("pre.conflicts").inner_text()
    assert git(repo, "rev-parse", "HEAD") == head
    shot(page, "task-diff-conflict")
    task = requests.get(f"{ws_server.url}/api/tasks/{second['task_id']}", timeout=10).json()
    assert task["status"] == "open" and task["workspace"]["state"] == "active" and task["busy"]["busy"] is False


def test_merge_without_csrf_is_refused(ws_server, repo):  # noqa: F811
    body = send(ws_server, "C [[write:c.txt=1]] [[commit:c]]")
    answer = requests.post(f"{ws_server.url}/tasks/{body['task_id']}/merge", timeout=10)
    assert answer.status_code == 400
    assert git(repo, "branch", "--list", f"alter0/task-{body['task_id']}") != ""
    diff = requests.get(f"{ws_server.url}/api/tasks/{body['task_id']}/diff?stat=1", timeout=10).json()
    assert diff["files"] == [{"path": "c.txt", "added": 1, "deleted": 0}] and "diff" not in diff


def test_api_diff_merge_discard_and_busy_reject_over_http(ws_server, repo):  # noqa: F811
    url = ws_server.url
    a = send(ws_server, "A [[write:shared.txt=alpha\\nFROM-A\\ngamma\\n]] [[commit:A]]")
    b = send(ws_server, "B [[write:shared.txt=alpha\\nFROM-B\\ngamma\\n]] [[commit:B]]")
    job = requests.get(f"{url}/api/jobs/{a['job_id']}", timeout=10).json()
    assert job["receipt"]["verified"] and job["receipt"]["diffstat"] == {"files": 1, "added": 1, "deleted": 1}
    full = requests.get(f"{url}/api/tasks/{a['task_id']}/diff", timeout=10).json()
    assert "+FROM-A" in full["diff"] and full["truncated"] is False
    assert "+FROM-A" in requests.get(f"{url}/api/tasks/{a['task_id']}/diff?raw=1", timeout=10).text
    merged = requests.post(f"{url}/api/tasks/{a['task_id']}/merge", json={"squash": True}, timeout=30)
    assert merged.status_code == 200 and merged.json()["squash"] is True
    assert git(repo, "log", "-1", "--format=%s").startswith(f"alter0: task {a['task_id']}:")
    refused = requests.post(f"{url}/api/tasks/{b['task_id']}/merge", json={}, timeout=30)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "merge_conflict"
    assert refused.json()["error"]["conflicts"] == ["shared.txt"]
    gone = requests.get(f"{url}/api/tasks/{a['task_id']}/diff", timeout=10)
    assert gone.status_code == 409 and "merged" in gone.json()["error"]["message"]
    assert requests.post(f"{url}/api/tasks/{b['task_id']}/merge", json={"squash": "yes"}, timeout=10).status_code == 400
    # discard: refused while it holds uncommitted work, done with force
    worktree = Path(requests.get(f"{url}/api/tasks/{b['task_id']}", timeout=10).json()["workspace"]["worktree"])
    (worktree / "scratch.txt").write_text("unsaved")
    kept = requests.post(f"{url}/api/tasks/{b['task_id']}/discard", timeout=30)
    assert kept.status_code == 409 and "scratch.txt" in kept.json()["error"]["message"] and worktree.exists()
    assert requests.post(f"{url}/api/tasks/{b['task_id']}/discard", json={"force": True}, timeout=30).ok
    assert not worktree.exists() and git(repo, "branch", "--list", f"alter0/task-{b['task_id']}") == ""
    # busy: reject answers 409 naming the running job
    c = send(ws_server, "C [[reply:ok]]")
    running = requests.post(f"{url}/api/jobs", json={"content": "long [[sleep:30]]", "user_id": "local",
                                                     "task_id": c["task_id"]}, timeout=10).json()
    wait_until(lambda: requests.get(f"{url}/api/tasks/{c['task_id']}", timeout=10).json()["busy"]["busy"], 30,
               "the task to be busy")
    busy = requests.post(f"{url}/api/jobs", json={"content": "next", "user_id": "local", "task_id": c["task_id"],
                                                  "busy_policy": "reject"}, timeout=10)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "task_busy"
    assert busy.json()["error"]["busy_job_id"] == running["job_id"]
    bad = requests.post(f"{url}/api/jobs", json={"content": "x", "user_id": "local", "task_id": c["task_id"],
                                                 "busy_policy": "later"}, timeout=10)
    assert bad.status_code == 400 and "busy_policy must be one of" in bad.json()["error"]["message"]
    requests.post(f"{url}/api/jobs/{running['job_id']}/cancel", timeout=10)
