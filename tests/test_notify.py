"""Notifications as a user meets them: real workers, real gunicorn, the real channel process, and a real HTTP
receiver (tests/support/webhook_receiver.py) that checks every delivery's HMAC signature."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from support.helpers import BIN, wait_until
from support.telegram_api import BotApiStub, channel_config, start_channel
from support.web import start_gunicorn
from support.webhook_receiver import Receiver

SECRET = "receiver-secret-123"


@pytest.fixture
def receiver():
    r = Receiver(SECRET)
    yield r
    r.close()


def hooked(make_env, receiver, events=None, **config):
    """An install whose notify.webhooks posts to ``receiver`` (quick retries for the tests)."""
    target = {"url": receiver.url, "secret": SECRET, **({"events": events} if events else {})}
    channels = config.pop("channels", {})
    return make_env(notify={"webhooks": [target], "lease_sec": 2},
                    channels={"delivery": {"max_delay_sec": 1}, **channels}, **config)


def wait_deliveries(env, receiver, n, event=None, timeout=60):
    return wait_until(lambda: len(receiver.deliveries(event)) >= n and receiver.deliveries(event), timeout,
                      lambda: f"{n} {event or ''} deliveries, got {receiver.got}\n{env.logs()}")


def status(env) -> dict:
    return json.loads(env.cli("status", "--json").stdout)


def test_job_outcomes_and_closed_tasks_are_posted_once_each_signed(make_env, receiver):
    env = hooked(make_env, receiver, task={"generation_timeout_sec": 1})
    env.start_worker()
    server = start_gunicorn(env)
    done = env.send("first message")
    failed = env.send("please fail [[exit:3]]", check=False)
    slow = env.send("too slow [[sleep:8]]", check=False)
    assert (done["status"], failed["status"], slow["status"]) == ("done", "failed", "timed_out")
    env.cli("task", "close", str(done["task_id"]))
    wait_deliveries(env, receiver, 4)
    time.sleep(2)  # nothing more comes: each outcome once
    got = receiver.deliveries()
    assert sorted(g["event"] for g in got) == ["job.done", "job.failed", "job.timed_out", "task.closed"]
    assert all(g["signature_ok"] for g in got)
    assert len({g["delivery"] for g in got}) == 4 and all(g["body"]["id"] == g["delivery"] for g in got)
    by_event = {g["event"]: g["body"] for g in got}
    assert by_event["job.done"]["job"] == dict(by_event["job.done"]["job"], id=done["job_id"], status="done",
                                               reply="echo: first message", content="first message")
    assert by_event["job.done"]["task"]["title"]
    assert by_event["job.failed"]["job"]["id"] == failed["job_id"] and by_event["job.failed"]["job"]["error"]
    assert by_event["job.timed_out"]["job"]["id"] == slow["job_id"]
    assert by_event["task.closed"]["task"] == dict(by_event["task.closed"]["task"], id=done["task_id"],
                                                   status="closed", closed_by="manual")
    # the delivery log and the per-target state, in the CLI and over HTTP; the secret never shown
    api = requests.get(server.url + "/api/status", timeout=10)
    for shown in (status(env), api.json()):
        [target] = shown["notify"]["webhooks"]
        assert (target["url"], target["backlog"], target["delivered"], target["failed"]) == (receiver.url, 0, 4, 0)
        assert target["last_delivery"] in {g["delivery"] for g in got}
        assert len(shown["notify"]["log"]) == 4
    text = env.cli("status").stdout
    assert SECRET not in api.text and SECRET not in text and "notifier: held by" in text
    assert f"webhook {target['target']} {receiver.url}: backlog 0, delivered 4, failed 0" in text
    page = requests.get(server.url + "/status", timeout=10).text
    assert "Outgoing webhooks" in page and "webhook-log" in page and SECRET not in page
    shown = json.loads(env.cli("config", "notify.webhooks", "--json").stdout)["notify.webhooks"]
    assert shown == [{"url": receiver.url, "secret": "***"}]
    audit = "".join(p.read_text() for p in (env.output / "audit").glob("*/command_permission.jsonl"))
    assert "notify.webhook_added" in audit and SECRET not in audit


def test_receiver_down_then_failing_then_up_gets_each_event_once_in_order(engine_env, receiver):
    """On both engines: Huey + SQLite, and Dramatiq + Redis + PostgreSQL (the lease on the server's clock)."""
    env = hooked(engine_env, receiver, events=["job.done"])
    receiver.down()  # connection refused
    env.start_worker()
    jobs = [env.send(f"message {i}")["job_id"] for i in range(3)]
    wait_until(lambda: status(env)["notify"]["webhooks"][0]["last_error"], 30, "a delivery error shown")
    target = status(env)["notify"]["webhooks"][0]
    assert target["backlog"] >= 1 and "refused" in target["last_error"]
    receiver.up()
    receiver.fail_with = 500
    jobs += [env.send(f"message {i}")["job_id"] for i in range(3, 5)]
    wait_until(lambda: len(receiver.got) >= 2, 30, "attempts answered 500")
    assert receiver.deliveries() == []
    receiver.fail_with = 0
    wait_deliveries(env, receiver, 5)
    time.sleep(2)
    got = receiver.deliveries()
    assert [g["body"]["job"]["id"] for g in got] == jobs  # once each, in order
    retried = [g for g in receiver.got if g["status"] == 500]
    assert retried and {g["delivery"] for g in retried} <= {g["delivery"] for g in got}  # same id on every retry
    assert all(g["signature_ok"] for g in retried)
    assert all(g["signature_ok"] for g in got)
    target = status(env)["notify"]["webhooks"][0]
    assert (target["backlog"], target["delivered"], target["failed"]) == (0, 5, 0)
    assert "500" in target["last_error"] and target["last_error_resolved"]  # what delayed them stays visible


def test_notifier_killed_between_event_and_send_still_delivers_once(make_env, receiver):
    env = hooked(make_env, receiver)
    killer = dict(env.env, ALTER0_FAULT_KILL="notify_send")
    worker = env.await_worker(env.spawn([str(BIN / "alter0"), "worker"], "doomed-worker", env=killer))
    wait_until(lambda: (status(env)["notify"]["holder"] or {}).get("owner", "").endswith(":worker"), 30,
               "the worker to hold the notifier lease")
    job = env.send("notify me")
    assert job["status"] == "done"
    worker.wait(timeout=30)  # it took the notifier's way out: SIGKILLed in the send
    assert worker.returncode == -signal.SIGKILL
    start_gunicorn(env)  # another long-running process takes the lease over
    [done] = wait_deliveries(env, receiver, 1, "job.done")
    [down] = wait_deliveries(env, receiver, 1, "worker.down")
    assert done["body"]["job"]["id"] == job["job_id"] and done["signature_ok"]
    assert down["body"]["worker"]["pid"] == worker.pid and down["body"]["reason"] == "dead"
    time.sleep(3)
    assert [g["event"] for g in receiver.deliveries()].count("job.done") == 1


def test_worker_down_and_up_reach_the_webhook_and_the_telegram_notify_chat(make_env, receiver):
    stub = BotApiStub()
    try:
        notify_chat = -100500  # a group on the allowlist: its own messages are answered there
        tg = channel_config(stub, notify_chat=notify_chat)
        env = hooked(make_env, receiver, channels=tg["channels"])
        worker = env.start_worker()
        start_channel(env, stub)
        job = env.send("from the terminal")  # not started from the notify chat: noticed there
        wait_until(lambda: any(f"job {job['job_id']} done in task" in t for t in stub.texts(notify_chat)), 30,
                   lambda: f"a job notice: {stub.texts(notify_chat)}\n{env.logs()}")
        bad = env.send("break it [[exit:3]]", check=False)
        failed = wait_until(lambda: next((t for t in stub.texts(notify_chat) if f"job {bad['job_id']} failed" in t),
                                         None), 30, lambda: f"a failure notice: {stub.texts(notify_chat)}")
        assert failed.startswith(f"job {bad['job_id']} failed in task {bad['task_id']} '") and "': " in failed
        [hook] = wait_deliveries(env, receiver, 1, "job.failed")  # the same error line the webhook carries
        assert "\n" not in failed and failed.endswith(hook["body"]["job"]["error"].strip().splitlines()[0][:300])
        stub.user_message("from the chat", 42, notify_chat, chat_type="supergroup")  # answered, not noticed
        wait_until(lambda: any("echo: from the chat" in t for t in stub.texts(notify_chat)), 30, env.logs)
        env.kill(worker)  # SIGKILL: the only worker cannot report itself
        [down] = wait_deliveries(env, receiver, 1, "worker.down")
        assert down["body"]["worker"]["pid"] == worker.pid and down["body"]["alive_workers"] == 0
        wait_until(lambda: any(f":{worker.pid} is down (dead)" in t for t in stub.texts(notify_chat)), 30,
                   lambda: f"a worker notice: {stub.texts(notify_chat)}\n{env.logs()}")
        second = env.start_worker()
        [up] = wait_deliveries(env, receiver, 1, "worker.up")
        assert up["body"]["worker"]["pid"] == second.pid and up["body"]["replaces"] == down["body"]["worker"]["id"]
        wait_until(lambda: any(f":{second.pid} is up" in t for t in stub.texts(notify_chat)), 30, env.logs)
        texts = stub.texts(notify_chat)
        assert not any("done in task" in t and "from the chat" in t for t in texts)
        assert sum(1 for t in texts if "is down" in t) == 1
        assert [g["event"] for g in receiver.deliveries()].count("worker.down") == 1
    finally:
        stub.close()


def test_webhook_test_command_against_a_receiver_and_a_dead_url(make_env, receiver):
    env = make_env()
    ok = env.cli("webhook", "test", receiver.url, "--secret", SECRET)
    assert ok.stdout.startswith("200 OK")
    [got] = receiver.deliveries("test")
    assert got["signature_ok"] and got["body"]["event"] == "test"
    receiver.down()
    dead = env.cli("webhook", "test", receiver.url, check=False)
    assert dead.returncode != 0 and "Traceback" not in dead.stderr
    assert dead.stderr.strip() == f"alter0: webhook test to {receiver.url} failed: connection refused"
    receiver.up()
    configured = hooked(make_env, receiver)  # no --secret: the configured target's secret signs it
    assert configured.cli("webhook", "test", receiver.url).stdout.startswith("200 OK")
    assert receiver.deliveries("test")[-1]["signature_ok"] and len(receiver.deliveries("test")) == 2
    bad = env.cli("webhook", "test", "file:///etc/passwd", check=False)
    assert bad.returncode == 2 and "not an http:// or https:// URL" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("target, problem", [
    ({"url": "ftp://example.com/hook", "secret": "s3cret-value"}, "must be an http:// or https:// URL"),
    ({"url": "https://example.com/hook"}, "the secret (HMAC key) must be"),
    ({"url": "https://example.com/hook", "secret": "s3cret-value", "events": ["job.exploded"]}, "events must be"),
])
def test_bad_webhook_targets_are_refused_at_config_time(make_env, target, problem):
    env = make_env(notify={"webhooks": [target]})
    out = env.cli("config", check=False)
    assert out.returncode != 0 and problem in out.stderr and "Traceback" not in out.stderr
    assert "s3cret-value" not in out.stderr
    worker = env.spawn([str(BIN / "alter0"), "worker"], "refused-worker")
    assert worker.wait(timeout=60) != 0 and problem in env.logs()


def test_secret_settings_are_masked_and_target_changes_audited(make_env, receiver):
    env = hooked(make_env, receiver)
    env.config["notify"]["webhooks"][0]["url"] = "https://user:pw-in-url@example.com/h?key=abc"
    env.write_config()
    shown = env.cli("config", "notify.webhooks").stdout
    assert SECRET not in shown and "pw-in-url" not in shown and "abc" not in shown and "example.com" in shown
    proc = env.spawn([str(BIN / "alter0"), "notify"], "notify")
    audit_files = lambda: "".join(p.read_text() for p in (env.output / "audit").glob("*/command_permission.jsonl"))
    wait_until(lambda: "notify.webhook_added" in audit_files(), 30, env.logs)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    env.config["notify"]["webhooks"] = [{"url": receiver.url, "secret": SECRET}]
    env.write_config()
    proc = env.spawn([str(BIN / "alter0"), "notify"], "notify")
    wait_until(lambda: "notify.webhook_removed" in audit_files(), 30, env.logs)
    lines = [json.loads(x) for x in audit_files().splitlines()]
    assert [x["event"] for x in lines if x["event"].startswith("notify.")] == [
        "notify.webhook_added", "notify.webhook_added", "notify.webhook_removed"]
    assert not any(s in audit_files() for s in (SECRET, "pw-in-url"))
