"""The task page's Diff view in real headless Chromium against a real worker and gunicorn: files collapsible and
highlighted, out-of-band changes shown, a conflicting merge refused with the conflict shown, a clean merge done
from the console (CSRF form)."""

from __future__ import annotations

import pytest
import requests

from support.helpers import merge
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
