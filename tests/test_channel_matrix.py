"""The Matrix channel as a user meets it: the real ``alter0 channel matrix`` process and a real worker against a
real Synapse homeserver (tests/support/synapse.py), people talking to the bot with their own Matrix clients."""

from __future__ import annotations

import json
import signal
import time

import pytest

from support.helpers import wait_until
from support.synapse import channel_config, start_channel


@pytest.fixture
def mx(make_env, synapse):
    """A bot account, an allowed user (alice) and a stranger (mallory), and an install with a worker configured for
    them; ``mx.start()`` runs the channel, ``mx.room()`` is a room of alice's the bot has joined."""
    class Mx:
        def __init__(self):
            self.bot, self.alice, self.mallory = (synapse.register(n) for n in ("bot", "alice", "mallory"))
            self.env = None

        def install(self, **extra):
            matrix = extra.pop("matrix", {})
            self.env = make_env(**_merge(channel_config(synapse, self.bot, [self.alice.user_id], **matrix), extra))
            self.env.start_worker()
            self.env.db()
            return self.env

        def start(self, password=False):
            return start_channel(self.env, self.bot, password=password)

        def room(self, *others):
            room = self.alice.create_room([self.bot.user_id, *(u.user_id for u in others)])
            wait_until(lambda: self.alice.members(room).get(self.bot.user_id) == "join", 30, self.env.logs)
            return room

        def said(self, room):
            return self.alice.bot_messages(room, self.bot.user_id)

        def wait_said(self, room, pred, timeout=60):
            return wait_until(lambda: pred(self.said(room)) and self.said(room), timeout,
                              lambda: f"{self.said(room)}\n{self.env.logs()}")
    return Mx()


def _merge(a: dict, b: dict) -> dict:
    from support.helpers import merge
    return merge(a, b)


def jobs():
    from alter0.models import Job
    return list(Job.select().order_by(Job.id))


def replies(msgs, marker="echo:"):
    return [m for m in msgs if marker in m["body"]]


def audit_lines(env):
    return [json.loads(x) for f in env.output.glob("audit/*/command_permission.jsonl")
            for x in f.read_text().splitlines()]


def test_invites_joined_from_allowed_users_and_rejected_from_strangers(mx):
    env = mx.install()
    mx.start()
    good = mx.alice.create_room([mx.bot.user_id])
    bad = mx.mallory.create_room([mx.bot.user_id])
    wait_until(lambda: mx.alice.members(good).get(mx.bot.user_id) == "join"
               and mx.mallory.members(bad).get(mx.bot.user_id) == "leave", 30, env.logs)
    refused = [x for x in audit_lines(env) if x["event"] == "refused_request"]
    assert [x["user_id"] for x in refused] == [f"matrix:{mx.mallory.user_id}"] and not refused[0]["allowed"]
    assert [m["body"] for m in mx.said(good)] == ["alter0 is here. Send a message to start, or !help."]


def test_message_gets_working_edited_into_a_threaded_reply_and_the_thread_is_bound(mx):
    env = mx.install(task={"routing_confidence_threshold": 1.0})  # the router would start a new task every time
    mx.start()
    room = mx.room()
    first = mx.alice.send(room, "refactor the parser")
    [reply] = replies(mx.wait_said(room, lambda m: replies(m)))
    assert reply["thread"] == first and reply["edits"] >= 1  # "working…" edited into the reply, in a thread
    assert reply["body"].startswith("task #1 · ") and "echo: refactor the parser" in reply["body"]
    mx.alice.send(room, "something else entirely")
    mx.wait_said(room, lambda m: len(replies(m)) == 2)
    mx.alice.send(room, "and add tests", thread=first)  # in the first thread: its task, without the router
    mx.wait_said(room, lambda m: len(replies(m)) == 3)
    a, b, c = jobs()
    assert b.task_id != a.task_id and c.task_id == a.task_id and c.decision_source == "thread"
    assert [m["thread"] for m in replies(mx.said(room))][2] == first
    status = json.loads(env.cli("status", "--json").stdout)
    chan = next(c for c in status["channels"] if c["platform"] == "matrix")
    assert chan["connected"] and chan["backlog"] == 0


def test_commands_map_onto_the_shared_ones(mx):
    env = mx.install()
    mx.start()
    room = mx.room()
    said = lambda n: mx.wait_said(room, lambda m: len(m) >= n)  # noqa: E731 (greeting first)
    mx.alice.send(room, "!new release notes")
    assert said(2)[1]["body"].startswith("task #1 created and in use")
    mx.alice.send(room, "!task list")
    assert "#1 [open] release notes" in said(3)[2]["body"]
    mx.alice.send(room, "!status")
    assert "workers alive: 1" in said(4)[3]["body"]
    mx.alice.send(room, "!frobnicate")
    assert said(5)[4]["body"] == "unknown command !frobnicate; try !help"
    mx.alice.send(room, "!task use none")
    said(6)
    root = mx.alice.send(room, "first topic")  # routed: a new task (#2) and a thread on this message
    mx.wait_said(room, lambda m: replies(m))
    mx.alice.send(room, "!assign 1", thread=root)  # move the thread to task 1
    assert said(8)[7]["body"].startswith("this thread now goes to task #1") and said(8)[7]["thread"] == root
    mx.alice.send(room, "more on it", thread=root)
    mx.wait_said(room, lambda m: len(replies(m)) == 2)
    assert [(j.task_id, j.decision_source) for j in jobs()][1] == (1, "thread")
    mx.alice.send(room, "[[sleep:30]] long job")
    mx.wait_said(room, lambda m: any("working" in x["body"] for x in m))
    mx.alice.send(room, "!cancel")
    mx.wait_said(room, lambda m: any("cancelled" in x["body"] for x in m))
    wait_until(lambda: jobs()[-1].status == "cancelled", 30, env.logs)
    mx.alice.send(room, f"!retry {jobs()[-1].id}")
    mx.wait_said(room, lambda m: any(x["body"].startswith(f"job #{jobs()[-1].id} retried") for x in m))
    mx.alice.send(room, "!help")
    assert mx.wait_said(room, lambda m: "!assign N" in m[-1]["body"])


def test_restart_mid_job_replies_exactly_once(mx):
    env = mx.install()
    proc = mx.start()
    room = mx.room()
    mx.alice.send(room, "[[sleep:2]] survive the crash")
    mx.wait_said(room, lambda m: any("working" in x["body"] for x in m))
    env.kill(proc)  # SIGKILL mid-job
    wait_until(lambda: jobs()[0].status == "done", 30, env.logs)
    mx.alice.send(room, "sent while it was down")  # answered after the restart: it resumes from next_batch
    mx.start()
    mx.wait_said(room, lambda m: len(replies(m)) == 2)
    time.sleep(2.0)
    texts = [m["body"] for m in replies(mx.said(room))]
    assert len(texts) == 2 and sum("survive the crash" in t for t in texts) == 1
    assert len(mx.said(room)) == 3  # greeting + two replies: each "working…" became its reply
    from alter0.models import ChannelDelivery
    assert ChannelDelivery.select().where(ChannelDelivery.state == "pending").count() == 0


def test_killed_after_the_send_before_recording_it_sends_once(mx):
    """The homeserver took the reply but the process died before the outbox marked it delivered: the resend
    carries the same transaction id, and Synapse answers with the first event (one message)."""
    env = mx.install()
    proc = mx.start()
    room = mx.room()
    mx.alice.send(room, "only once")
    mx.wait_said(room, lambda m: replies(m))
    env.kill(proc)
    from alter0.database import write_tx
    from alter0.models import ChannelDelivery
    with write_tx():  # as if the process died between the send and recording it
        n = ChannelDelivery.update(state="pending", result_id=None).where(
            ChannelDelivery.key.startswith("reply:")).execute()
    assert n == 1
    mx.start()
    wait_until(lambda: ChannelDelivery.select().where(ChannelDelivery.state == "pending").count() == 0, 30,
               env.logs)
    time.sleep(1.0)
    events = [e for e in mx.alice.events(room) if e["sender"] == mx.bot.user_id and e["type"] == "m.room.message"]
    assert sum("echo: only once" in e["content"]["body"] for e in events) == 1  # one edit into the reply
    assert len(replies(mx.said(room))) == 1 and len(mx.said(room)) == 2


def test_strangers_message_is_refused_once_and_audited(mx):
    env = mx.install()
    mx.start(password=True)  # a password login instead of a token
    room = mx.room(mx.mallory)
    mx.mallory.join(room)
    mx.mallory.send(room, "run rm -rf for me")
    refusal = mx.wait_said(room, lambda m: len(m) >= 2)[1]
    time.sleep(1.5)
    assert len(mx.said(room)) == 2 and jobs() == []
    assert refusal["body"] == (f"This bot is private: {mx.mallory.user_id} is not on its allowlist. "
                               "Nothing was sent to an agent.")
    refused = [x for x in audit_lines(env) if x["event"] == "refused_request"]
    assert [x["user_id"] for x in refused] == [f"matrix:{mx.mallory.user_id}"]
    assert mx.bot.password not in env.logs()
    mx.alice.send(room, "hello from alice")  # the allowed user in the same room is answered
    mx.wait_said(room, lambda m: replies(m))


def test_cold_start_does_not_answer_history_and_a_restart_answers_what_came_meanwhile(mx):
    env = mx.install(matrix={"timeline_limit": 10})
    room = mx.alice.create_room([mx.bot.user_id])
    mx.bot.join(room)  # the bot account was in the room before alter0 ever ran
    for i in range(4):
        mx.alice.send(room, f"old history {i}")
    proc = mx.start()
    mx.alice.send(room, "new after start")
    mx.wait_said(room, lambda m: replies(m))
    env.kill(proc, signal.SIGTERM)
    for i in range(14):  # more than one /sync timeline holds (10): the rest is fetched with /messages
        mx.alice.send(room, f"while down {i:02d}")
    mx.start()
    mx.wait_said(room, lambda m: len(replies(m)) == 15, timeout=120)
    time.sleep(1.5)
    assert [j.content for j in jobs()] == ["new after start"] + [f"while down {i:02d}" for i in range(14)]
    from alter0.models import ChannelEvent
    assert ChannelEvent.select().where(ChannelEvent.state == "stale").count() >= 1  # history: recorded, not run


def test_code_block_reply_is_html_with_a_plain_body_and_long_replies_split(mx):
    env = mx.install(matrix={"max_message_chars": 2000})
    mx.start()
    room = mx.room()
    root = mx.alice.send(room, "[[long:5000]] write it all")
    parts = mx.wait_said(room, lambda m: len(m) >= 4 and jobs()[0].status == "done")[1:]
    time.sleep(1.0)
    parts = mx.said(room)[1:]
    assert len(parts) >= 3 and all(p["thread"] == root for p in parts)
    assert all(len(p["body"]) <= 2000 and p["format"] == "org.matrix.custom.html" for p in parts)
    block = next(p for p in parts if "```python" in p["body"])
    assert '<pre><code class="language-python">' in block["formatted_body"] and "def block_" in block["body"]
    assert "```" not in block["formatted_body"]
    whole = "".join(p["body"] for p in parts)
    assert all(f"def block_{i}()" in whole for i in range(jobs()[0].reply_message.content.count("def block_")))


def test_bad_input_gets_a_defined_answer(mx):
    env = mx.install(task={"max_content_bytes": 500})
    mx.start()
    room = mx.room()
    n = lambda k: mx.wait_said(room, lambda m: len(m) >= k)  # noqa: E731
    mx.alice.send(room, None, msgtype="m.image", body="cat.png", url="mxc://localhost/abc")
    assert n(2)[1]["body"] == "Only text for now: this image was not sent to the agent."
    mx.alice.send(room, None, msgtype="m.file", body="notes.pdf", url="mxc://localhost/def")
    assert n(3)[2]["body"] == "Only text for now: this file was not sent to the agent."
    mx.alice.send(room, "x" * 2000)
    assert n(4)[3]["body"].startswith("Not sent to the agent: content is 2000 bytes")
    target = mx.alice.send(room, "!task list")
    n(5)
    mx.alice.edit(room, target, "!status")
    assert n(6)[5]["body"].startswith("Edits are not applied")
    mx.alice.redact(room, target)
    assert n(7)[6]["body"].startswith("Deleting a message does not undo it")
    assert jobs() == []


def test_doctor_checks_the_matrix_settings_and_the_homeserver(make_env, synapse):
    bot = synapse.register("bot")
    env = make_env(channels={"enabled": ["matrix"], "matrix": {"homeserver": "http://127.0.0.1:9"}})
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode != 0
    assert "channel matrix: channels.matrix.user_id is not set" in out.stdout
    assert "channel matrix: neither channels.matrix.access_token nor channels.matrix.password is set" in out.stdout
    assert "channel matrix: channels.matrix.allowed_users is empty" in out.stdout
    env.env["ALTER0_MATRIX_TOKEN"] = bot.token
    env.config["channels"]["matrix"].update(user_id=bot.user_id, allowed_users=["@alice:localhost"])
    env.write_config()
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode != 0 and "homeserver http://127.0.0.1:9/_matrix/client/versions is unreachable" in out.stdout
    env.config["channels"]["matrix"]["homeserver"] = synapse.url
    env.write_config()
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode == 0, out.stdout
    shown = env.cli("config", "show", check=False).stdout + env.cli("send", "/config", check=False).stdout
    assert bot.token not in shown


def test_notification_is_posted_to_the_notify_room(synapse, tmp_path):
    """The hook the notification feed calls: a feed event becomes one notice in channels.matrix.notify_room."""
    from alter0.channels.matrix import MatrixChannel
    from alter0.config import load_config
    from alter0.models import ChannelDelivery, NotifyEvent
    bot, alice = synapse.register("bot"), synapse.register("alice")
    room = alice.create_room([bot.user_id])
    bot.join(room)
    settings = {"channels.matrix.homeserver": synapse.url, "channels.matrix.user_id": bot.user_id,
                "channels.matrix.access_token": bot.token, "channels.matrix.allowed_users": [alice.user_id]}

    path = tmp_path / "config.json"
    path.write_text("{}")
    task = {"id": 3, "title": "release notes"}
    done_event = NotifyEvent(id=1, kind="job.done", payload={"job": {"id": 7, "channel_id": "cli"}, "task": task})
    failed_event = NotifyEvent(id=2, kind="job.failed", payload={"job": {"id": 8, "error": "executor exited 1"},
                                                                  "task": task})
    own_room = NotifyEvent(id=3, kind="job.done", payload={"job": {"id": 9, "channel_id": f"matrix:{room}"}})

    class Rt:
        cfg = load_config(path, overrides=settings, env={})
    assert not MatrixChannel.notifies(Rt.cfg)
    assert MatrixChannel(Rt()).notification(done_event) == []  # no notify_room: none
    Rt.cfg = load_config(path, overrides=dict(settings, **{"channels.matrix.notify_room": room}), env={})
    assert MatrixChannel.notifies(Rt.cfg)
    channel = MatrixChannel(Rt())
    try:
        assert channel.notification(own_room) == []  # answered in its own room already
        [done] = channel.notification(done_event)
        [failed] = channel.notification(failed_event)
        for item in (done, failed):
            channel.send(ChannelDelivery(key=item.key, method=item.method, payload=item.payload, created_at=1.0))
    finally:
        channel.close()
    bodies = [m["body"] for m in alice.bot_messages(room, bot.user_id)]
    assert bodies == ["job 7 done in task 3 'release notes'",
                      "job 8 failed in task 3 'release notes': executor exited 1"]
    assert done.key != failed.key and done.payload["content"]["msgtype"] == "m.notice"
