"""End to end: real gunicorn (web/gunicorn.conf.py) and a real worker on a temp output dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import requests

from support.helpers import BIN, ROOT, free_port, group_pids, pid_alive, wait_status, wait_until
from support.web import answers, ndjson, start_gunicorn

USER = {"user_id": "e2e"}


def poll(url, until, timeout=60):
    return wait_status(lambda: requests.get(url, timeout=10).json(), until, timeout)


def test_sync_message(live_server):
    r = requests.post(live_server.url + "/api/message", json={"content": "hello [[reply:hi from e2e]]", **USER},
                      timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == "hi from e2e" and body["decision"] == "new" and isinstance(body["closed"], bool)


def test_stream_message(live_server):
    with requests.post(live_server.url + "/api/message?stream=1&chunk_size=4",
                       json={"content": "stream [[reply:abcdefghij]]", **USER}, stream=True, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    types = [line["type"] for line in lines]
    assert "routed" in types and types[-1] == "done"
    assert "".join(line["chunk"] for line in lines if line["type"] == "chunk") == "abcdefghij"
    assert lines[-1]["total"] == 3


def test_async_submit_poll_and_cancel_kills_the_executor_group(live_server):
    url = live_server.url
    r = requests.post(url + "/api/jobs", json={"content": "work long [[child]] [[sleep:60]]", **USER}, timeout=10)
    assert r.status_code == 202
    job_url = url + r.headers["Location"]
    poll(job_url, ("generating",), timeout=30)
    env = live_server.env
    deadline = time.time() + 30
    while not [x for x in env.agent_runs() if x.get("event") == "child"] and time.time() < deadline:
        time.sleep(0.1)
    run = [x for x in env.agent_runs() if x.get("event") == "child"][0]
    assert pid_alive(run["pid"]) and pid_alive(run["child_pid"])
    cancel = requests.post(job_url + "/cancel", timeout=10)
    assert cancel.status_code == 200 and cancel.json()["cancel_requested"] is True
    view = poll(job_url, ("cancelled", "failed", "done", "timed_out"), timeout=30)
    assert view["status"] == "cancelled"
    deadline = time.time() + 10
    while (pid_alive(run["pid"]) or pid_alive(run["child_pid"])) and time.time() < deadline:
        time.sleep(0.1)
    assert not pid_alive(run["pid"]) and not pid_alive(run["child_pid"])
    assert group_pids(run["pgid"]) == []
    again = requests.post(job_url + "/cancel", timeout=10)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    events = ndjson(requests.get(job_url + "/events", timeout=10).text)
    assert events[-1] == {"kind": "end", "job_id": view["job_id"], "status": "cancelled"}


def test_idempotent_resubmit_returns_the_first_job(live_server):
    body = {"content": "once only [[reply:ok]]", **USER}
    first = requests.post(live_server.url + "/api/jobs", json=body, headers={"Idempotency-Key": "e2e-1"}, timeout=10)
    second = requests.post(live_server.url + "/api/jobs", json=body, headers={"Idempotency-Key": "e2e-1"}, timeout=10)
    assert first.json()["job_id"] == second.json()["job_id"] and second.json()["created"] is False
    poll(live_server.url + first.headers["Location"], ("done",))
    listed = requests.get(live_server.url + "/api/jobs", timeout=10).json()["jobs"]
    assert [j["content"] for j in listed].count(body["content"]) == 1


def test_a_disconnected_stream_does_not_cancel_the_job(live_server):
    with requests.post(live_server.url + "/api/message?stream=1", json={"content": "slow [[sleep:2]]", **USER},
                       stream=True, timeout=30) as r:
        job_id = int(r.headers["X-Job-Id"])
        next(r.iter_lines())
    assert poll(f"{live_server.url}/api/jobs/{job_id}", ("done", "failed", "cancelled"))["status"] == "done"


def test_status_and_metrics_under_gunicorn(live_server):
    requests.post(live_server.url + "/api/message", json={"content": "count me [[reply:ok]]", **USER}, timeout=60)
    status = requests.get(live_server.url + "/api/status", timeout=10).json()
    assert any(w["alive"] for w in status["workers"])
    metrics = requests.get(live_server.url + "/metrics", timeout=10).text
    assert 'alter0_jobs{state="done"}' in metrics


def test_the_token_guards_the_api_under_gunicorn(make_env):
    env = make_env(security={"api_token": "e2e-token", "admin_user_ids": []})
    server = start_gunicorn(env)
    assert requests.get(server.url + "/api/status", timeout=10).status_code == 401
    ok = requests.get(server.url + "/api/status", headers={"Authorization": "Bearer e2e-token"}, timeout=10)
    assert ok.status_code == 200


def test_a_public_bind_without_a_token_is_refused(a0):
    port = free_port()
    proc = subprocess.run([str(BIN / "gunicorn"), "-c", str(ROOT / "web" / "gunicorn.conf.py"), "--bind",
                           f"0.0.0.0:{port}", "web:create_app()"], env=a0.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "refusing to serve on 0.0.0.0" in proc.stderr
    cli = a0.cli("web", "--host", "0.0.0.0", "--port", str(port), check=False, timeout=60)
    assert cli.returncode == 2 and "security.api_token" in cli.stderr


def test_procfile_starts_web_and_worker_with_honcho(a0):
    port = free_port()
    env = dict(a0.env, PORT=str(port))
    honcho = subprocess.Popen([str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start",
                               "-p", str(port)], env=env, cwd=ROOT, stdout=open(a0.tmp / "honcho.log", "ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)  # the Procfile's paths are relative
    a0.procs.append(honcho)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            assert honcho.poll() is None, (a0.tmp / "honcho.log").read_text()
            try:
                r = requests.post(url + "/api/message", json={"content": "via honcho [[reply:up]]", **USER},
                                  timeout=60)
                break
            except requests.RequestException:
                assert time.time() < deadline, (a0.tmp / "honcho.log").read_text()
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["response"] == "up"
        assert "alter0 console at http://127.0.0.1:" in (a0.tmp / "honcho.log").read_text()
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(timeout=60)


def test_alter0_web_runs_gunicorn_with_the_config_file(a0):
    port = free_port()
    proc = subprocess.Popen([str(BIN / "alter0"), "web", "--port", str(port), "--workers", "1"], env=a0.env,
                            cwd=a0.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    a0.procs.append(proc)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health", proc, lambda: proc.stdout.read().decode()),
                   60, "alter0 web to answer /health", interval=0.2)
        assert requests.get(f"http://127.0.0.1:{port}/api/status", timeout=10).json()["gateway"]["pid"] != proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert f"console at http://127.0.0.1:{port}/" in proc.stdout.read().decode()
