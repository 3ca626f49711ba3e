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

        def start(self):
            return start_channel(self.env, self.bot)

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
