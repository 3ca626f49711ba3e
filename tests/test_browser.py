"""The console in real headless Chromium (Debian's chromium, driven by Playwright for Python).

scripts/ci/install-browser.sh installs both. Screenshots land in test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from support.helpers import ROOT, skip_or_fail, wait_status

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser"):
        found = name and shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def page(tmp_path):
    """A fresh Chromium profile (its own --user-data-dir) and one page, 1280x800."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (scripts/ci/install-browser.sh)")
    exe = chromium_path()
    if exe is None:
        skip_or_fail("chromium is not installed (scripts/ci/install-browser.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=exe, headless=True, chromium_sandbox=False,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        page = context.pages[0] if context.pages else context.new_page()
        yield page
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def api_wait(url: str, statuses: tuple[str, ...], timeout: float = 30) -> dict:
    return wait_status(lambda: requests.get(url, timeout=10).json(), statuses, timeout)


def test_chat_sends_a_message_and_shows_the_streamed_reply(live_server, page):
    page.goto(live_server.url + "/")
    page.fill("#content", "set up the project [[reply:project is set up]]")
    page.click("#send")
    reply = page.locator(".msg.bot[data-status=done] .bubble.reply")
    reply.wait_for()
    assert reply.inner_text() == "project is set up"
    meta = page.locator(".msg.bot .meta").inner_text()
    assert "task #" in meta and "new" in meta and "confidence" in meta
    page.fill("#content", "/task list")
    page.keyboard.press("Enter")
    page.locator(".msg.cmd .bubble", has_text="set up the project").wait_for()
    shot(page, "chat")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "chat-phone")


def test_cancel_a_running_job_from_the_jobs_page(live_server, page):
    r = requests.post(live_server.url + "/api/jobs", json={"content": "long run [[sleep:60]]", "user_id": "local"},
                      timeout=10)
    job_url = live_server.url + r.headers["Location"]
    job_id = r.json()["job_id"]
    api_wait(job_url, ("generating",))
    page.goto(live_server.url + "/jobs")
    row = page.locator(f"#jobs-running tr[data-job='{job_id}']")
    row.wait_for()
    shot(page, "jobs-running")
    row.get_by_role("button", name="Cancel").click()
    page.locator(".flash.ok", has_text=f"job {job_id}").wait_for()
    assert api_wait(job_url, ("cancelled", "failed", "done"))["status"] == "cancelled"
    page.locator(f"#jobs-failed tr[data-job='{job_id}'] .badge.s-cancelled").wait_for()  # auto-refresh shows it
    page.locator(f"#jobs-failed tr[data-job='{job_id}']").get_by_role("button", name="Retry").wait_for()
    shot(page, "jobs-cancelled")


def test_close_a_task_from_its_page(live_server, page):
    body = requests.post(live_server.url + "/api/message", json={"content": "write the changelog [[reply:ok]]",
                                                                 "user_id": "local"}, timeout=60).json()
    page.goto(f"{live_server.url}/tasks/{body['task_id']}")
    page.get_by_role("button", name="Close task").click()
    page.locator(".flash.ok", has_text=f"task #{body['task_id']} closed").wait_for()
    assert page.locator("h1 .badge").inner_text() == "closed"
    assert page.get_by_role("button", name="Reopen task").is_visible()
    task = requests.get(f"{live_server.url}/api/tasks/{body['task_id']}", timeout=10).json()
    assert task["status"] == "closed" and task["closed_by"] == "manual"
    shot(page, "task-closed")
    page.goto(live_server.url + "/status")
    page.locator("#workers .badge.up").first.wait_for()
    shot(page, "status")
