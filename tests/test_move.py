"""Move a misrouted message to another task (issue 15): over HTTP and the CLI against a real worker and gunicorn,
and in one step from the console; the chat command and the Telegram button are in test_channel_telegram.py."""

from __future__ import annotations

import json
import re

import requests

from support.helpers import wait_status
from support.web import start_gunicorn

FINISHED = ("done", "failed", "cancelled", "timed_out")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def audit_lines(env) -> list[dict]:
    return [json.loads(line) for p in sorted((env.output / "audit").glob("*/command_permission.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def memory_texts(url: str, task_id: int, headers: dict) -> list[str]:
    task = requests.get(f"{url}/api/tasks/{task_id}", headers=headers, timeout=10).json()
    mem = task.get("memory") or {}
    return [t["content"] for t in mem.get("turns") or []] + [mem.get("summary") or ""]


def test_move_over_http_and_cli_reruns_in_the_right_task_once(make_env):
    env = make_env(web={"sync_timeout_sec": 30})
    alice = json.loads(env.cli("token", "create", "--user", "alice", "--json").stdout)["token"]
    mallory = json.loads(env.cli("token", "create", "--user", "mallory", "--json").stdout)["token"]
    env.start_worker()
    url = start_gunicorn(env).url
    me = bearer(alice)

    def say(content: str, **extra) -> dict:
        r = requests.post(url + "/api/message", json={"content": content, "user_id": "alice", **extra},
                          headers=me, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    login = say("set up the login page [[reply:login page is ready]]")
    billing = say("new task: billing export as CSV [[reply:billing export started]]")
    assert billing["task_id"] != login["task_id"]
    a, b = login["task_id"], billing["task_id"]
    # the misroute: a billing follow-up lands in the login task
    wrong = say("add a VAT column to the billing export", task_id=a)
    assert wrong["task_id"] == a
    assert any("VAT column" in t for t in memory_texts(url, a, me))

    moved = requests.post(f"{url}/api/jobs/{wrong['job_id']}/move", json={"task_id": b}, headers=me, timeout=10)
    assert moved.status_code == 202, moved.text
    new = moved.json()
    assert new["moved_from"] == wrong["job_id"] and new["job_id"] != wrong["job_id"]
    assert moved.headers["Location"].endswith(f"/api/jobs/{new['job_id']}")
    done = wait_status(lambda: requests.get(f"{url}/api/jobs/{new['job_id']}", headers=me, timeout=10).json(),
                       FINISHED, 60)
    assert done["status"] == "done" and done["task_id"] == b and done["decision_source"] == "moved"
    assert "add a VAT column to the billing export" in done["response"]  # the agent answered it again, in b
    prompt = env.agent_runs()[-1]["prompt"]
    assert f"continuing task #{b}" in prompt and "billing export started" in prompt
    assert "login page is ready" not in prompt
    # task a forgot the turn (message and reply); task b holds it
    assert not any("VAT column" in t for t in memory_texts(url, a, me))
    assert any("VAT column" in t for t in memory_texts(url, b, me))
    # the old job's timeline says where it went
    events = requests.get(f"{url}/api/jobs/{wrong['job_id']}?events=1", headers=me, timeout=10).json()["events"]
    assert any(e["kind"] == "moved" and e["data"]["to_task"] == b for e in events)

    # exactly once: a repeat answers 200 with the same job and makes nothing new
    again = requests.post(f"{url}/api/jobs/{wrong['job_id']}/move", json={"task_id": b}, headers=me, timeout=10)
    assert again.status_code == 200 and again.json()["job_id"] == new["job_id"]
    jobs = requests.get(url + "/api/jobs?limit=500", headers=me, timeout=10).json()["jobs"]
    assert sum(1 for j in jobs if j["moved_from"] == wrong["job_id"]) == 1
    assert len(env.agent_runs()) == 4

    # unknown job or task: 404 with the documented error shape; a bad body: 400
    for path, body in ((f"/api/jobs/999999/move", {"task_id": b}), (f"/api/jobs/{login['job_id']}/move",
                                                                   {"task_id": 999999})):
        r = requests.post(url + path, json=body, headers=me, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        assert "does not exist" in r.json()["error"]["message"]
    r = requests.post(f"{url}/api/jobs/{login['job_id']}/move", json={"task_id": "b"}, headers=me, timeout=10)
    assert r.status_code == 400 and "task_id" in r.json()["error"]["message"]
    # someone else's job: 404 as if it did not exist, and audited
    r = requests.post(f"{url}/api/jobs/{login['job_id']}/move", json={"task_id": b}, headers=bearer(mallory),
                      timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    moves = [(x["user_id"], x["allowed"]) for x in audit_lines(env) if x["event"] == "job_move"]
    assert moves == [("alice", True), ("mallory", False)]
    # a job still generating is not moved (409): wait for its reply or cancel it
    busy = requests.post(url + "/api/jobs", json={"content": "slow [[sleep:30]]", "user_id": "alice"},
                         headers=me, timeout=10).json()
    wait_status(lambda: requests.get(f"{url}/api/jobs/{busy['job_id']}", headers=me, timeout=10).json(),
                ("generating",), 30)
    r = requests.post(f"{url}/api/jobs/{busy['job_id']}/move", json={"task_id": a}, headers=me, timeout=10)
    assert r.status_code == 409 and "still generating" in r.json()["error"]["message"]
    requests.post(f"{url}/api/jobs/{busy['job_id']}/cancel", headers=me, timeout=10)

    # the CLI: alter0 job move JOB TASK, then a repeat does nothing
    wrong2 = say("and gzip the billing export", task_id=a)
    out = env.cli("job", "move", str(wrong2["job_id"]), str(b)).stdout
    assert f"job {wrong2['job_id']} moved to task {b}" in out
    new2 = int(out.split("as job ")[1].split()[0])
    assert env.wait_job(new2)["task_id"] == b
    assert "nothing to move" in env.cli("job", "move", str(wrong2["job_id"]), str(b)).stdout
    missing = env.cli("job", "move", "999999", str(b), check=False)
    assert missing.returncode != 0 and "job 999999 does not exist" in missing.stderr
    assert not any("gzip" in t for t in memory_texts(url, a, me))


def test_move_from_the_console_in_one_step(live_server):
    url, s = live_server.url, requests.Session()
    first = s.post(url + "/api/message", json={"content": "write the release notes [[reply:notes drafted]]",
                                               "user_id": "web"}, timeout=60).json()
    other = s.post(url + "/api/message", json={"content": "new task: fix the flaky CI job [[reply:looking at CI]]",
                                               "user_id": "web"}, timeout=60).json()
    wrong = s.post(url + "/api/message", json={"content": "the CI job times out on step 3", "user_id": "web",
                                               "task_id": first["task_id"]}, timeout=60).json()
    page = s.get(f"{url}/jobs/{wrong['job_id']}", timeout=10)
    assert page.status_code == 200 and "Move to task" in page.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    # without the CSRF token: refused, nothing moved
    r = s.post(f"{url}/jobs/{wrong['job_id']}/move", data={"task_id": other["task_id"]}, timeout=10)
    assert r.status_code in (400, 403)
    r = s.post(f"{url}/jobs/{wrong['job_id']}/move", data={"task_id": other["task_id"], "csrf_token": token},
               timeout=10)
    assert r.status_code == 200, r.text
    jobs = s.get(url + "/api/jobs?limit=100", timeout=10).json()["jobs"]
    moved = [j for j in jobs if j["moved_from"] == wrong["job_id"]]
    assert len(moved) == 1
    done = wait_status(lambda: s.get(f"{url}/api/jobs/{moved[0]['job_id']}", timeout=10).json(), FINISHED, 60)
    assert done["task_id"] == other["task_id"] and "times out on step 3" in done["response"]
    task_page = s.get(f"{url}/tasks/{other['task_id']}", timeout=10).text
    assert "times out on step 3" in task_page


def test_a_folded_turn_leaves_the_summary_and_a_task_it_alone_started_closes(stub_runtime):
    """In process (stub engine, real SQLite): a turn already folded into the summary is taken out of it too; the
    task the misrouted message had started, holding nothing else, is closed; the old task's session is reset."""
    import sys

    from alter0 import service
    from alter0.errors import Conflict
    from alter0.memory import get_memory
    from alter0.models import Task
    rt = stub_runtime(task__memory_turns=1,
                      executor__command=[sys.executable, "-c", "import sys; print('ok: ' + sys.stdin.read()[-40:])"])

    def send(text, **kw):
        job, _ = service.submit(rt, text, "u1", **kw)
        rt.queue.join()
        return job.__class__.get_by_id(job.id)

    home = send("new task: the quarterly report")
    wrong = send("new task: churn SQL for the monthly report")  # should have joined `home`
    Task.update(session_id="sess-1").where(Task.id == wrong.task_id).execute()
    follow = send("the quarterly report needs a chart", task_id=home.task_id)  # pushes older turns into the summary
    assert "quarterly report" in get_memory(home.task_id).summary
    moved, created = service.move(rt, wrong.id, home.task_id, as_user="u1")
    assert created and moved.moved_from == wrong.id
    rt.queue.join()
    old = Task.get_by_id(wrong.task_id)
    assert old.status == "closed" and "moved to task" in old.close_reason and old.session_id is None
    mem = get_memory(wrong.task_id)
    assert "churn" not in mem.summary and not any("churn" in t["content"] for t in mem.turns)
    # the moved job's turn folds into home's memory like any other
    assert moved.__class__.get_by_id(moved.id).task_id == home.task_id
    # an earlier job of home moved elsewhere: its line leaves home's summary
    other = send("new task: unrelated docs")
    again, _ = service.move(rt, follow.id, other.task_id, as_user="u1")
    rt.queue.join()
    home_mem = get_memory(home.task_id)
    assert "needs a chart" not in home_mem.summary + " ".join(t["content"] for t in home_mem.turns)
    assert again.__class__.get_by_id(again.id).task_id == other.task_id
    # a moved job goes nowhere else: its successor is the one to move
    try:
        service.move(rt, follow.id, home.task_id, as_user="u1")
        raise AssertionError("a second move of the same job to another task must be refused")
    except Conflict as exc:
        assert f"move job {again.id} instead" in exc.message
