"""The Telegram channel as a user meets it: the real ``alter0 channel telegram`` process and a real worker against
a local stand-in of the Bot API (tests/support/telegram_api.py)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from support.helpers import wait_until
from support.telegram_api import BotApiStub, channel_config, start_channel

USER, GROUP = 42, -100500


@pytest.fixture
def stub():
    s = BotApiStub()
    yield s
    s.close()


@pytest.fixture
def tg(make_env, stub):
    """An install with a worker, configured for the stand-in (the channel itself is started by each test)."""
    def factory(**extra):
        env = make_env(**channel_config(stub, **extra.pop("telegram", {})), **extra)
        env.start_worker()
        env.db()
        return env
    return factory


def replies(stub, chat, marker="echo:"):
    return [t for t in stub.texts(chat) if marker in t]


def wait_replies(env, stub, chat, n, marker="echo:", timeout=60):
    return wait_until(lambda: len(replies(stub, chat, marker)) >= n and replies(stub, chat, marker), timeout,
                      lambda: f"{n} replies in chat {chat}: {stub.texts(chat)}\n{env.logs()}")


def jobs():
    from alter0.models import Job
    return list(Job.select().order_by(Job.id))


def test_message_gets_working_message_edited_into_the_reply(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("hello there", USER)
    [reply] = wait_replies(env, stub, USER, 1)
    [msg] = stub.chat(USER)  # the "working…" message was replaced by the reply: one bot message
    assert msg["edits"] >= 1 and reply.startswith("task #1 · ") and "echo: hello there" in reply
    assert [b["text"] for b in msg["reply_markup"]["inline_keyboard"][0]] == ["Move…", "Close task"]
    assert [j.channel_id for j in jobs()] == ["telegram:42"]
    status = json.loads(env.cli("status", "--json").stdout)
    [chan] = [c for c in status["channels"] if c["platform"] == "telegram"]  # matrix is registered, not running
    assert chan["connected"] and chan["backlog"] == 0


def test_cold_start_runs_only_recent_updates_and_records_the_rest(tg, stub):
    for i in range(30):
        stub.user_message(f"old {i}", USER, date=time.time() - 7200)
    for i in range(110):  # more than one getUpdates batch (100)
        stub.user_message(f"recent {i}", USER)
    env = tg(telegram={"stale_max_count": 3})
    start_channel(env, stub)
    wait_replies(env, stub, USER, 3)
    time.sleep(1.5)
    assert sorted(j.content for j in jobs()) == ["recent 107", "recent 108", "recent 109"]
    from alter0.models import ChannelEvent
    states = [e.state for e in ChannelEvent.select()]
    assert states.count("stale") == 137 and len(states) == 140  # recorded, not lost


def test_restart_with_pending_updates_drops_nothing(tg, stub):
    env = tg(telegram={"stale_max_count": 1, "stale_window_sec": 60})
    proc = start_channel(env, stub)
    stub.user_message("first", USER)
    wait_replies(env, stub, USER, 1)
    env.kill(proc, signal.SIGTERM)
    for i in range(6):  # arrive while the channel is down, and look old: a restart still runs them all
        stub.user_message(f"while down {i}", USER, date=time.time() - 3600)
    start_channel(env, stub)
    wait_replies(env, stub, USER, 7)
    assert len(jobs()) == 7


def test_redelivered_update_makes_no_second_job(tg, stub):
    env = tg()
    start_channel(env, stub)
    update = stub.user_message("only once", USER)
    wait_replies(env, stub, USER, 1)
    stub.redeliver(update)
    wait_until(lambda: not stub.updates, 10, "the redelivered update to be fetched")
    time.sleep(1.0)
    assert len(jobs()) == 1 and len(stub.chat(USER)) == 1


def test_killed_between_job_done_and_send_replies_exactly_once(tg, stub):
    env = tg()
    proc = start_channel(env, stub)
    stub.hold = lambda method, p: "echo:" in p.get("text", "")  # the reply's send hangs...
    stub.user_message("survive the crash", USER)
    wait_until(lambda: any(m == "editMessageText" and "echo:" in p.get("text", "") for _, m, p in stub.calls), 60,
               env.logs)
    assert jobs()[0].status == "done"
    env.kill(proc)  # ...and the channel dies in the middle of it (SIGKILL)
    stub.hold = None
    stub.released.set()  # the platform applied the edit the dead process sent
    wait_until(lambda: "echo:" in stub.texts(USER)[0], 10, "the held edit to land")
    sent = stub.count("editMessageText")
    start_channel(env, stub)
    wait_until(lambda: stub.count("editMessageText") > sent, 30, env.logs)  # the restart sends it again...
    time.sleep(1.0)  # ...Telegram says "not modified", which counts as delivered
    assert len(replies(stub, USER)) == 1 and len(stub.chat(USER)) == 1
    from alter0.models import ChannelDelivery
    assert ChannelDelivery.select().where(ChannelDelivery.state == "pending").count() == 0


def test_killed_before_the_reply_is_sent_delivers_it_after_restart(tg, stub):
    env = tg()
    proc = start_channel(env, stub)
    stub.user_message("[[sleep:1]] slow one", USER)
    # The "working…" message is out and recorded (Telegram has no idempotency key: a kill in the instant between
    # the Bot API taking a message and the outbox recording it would repeat that message; README says so).
    from alter0.models import ChannelDelivery
    wait_until(lambda: stub.chat(USER) and ChannelDelivery.select().where(
        ChannelDelivery.key.startswith("working:"), ChannelDelivery.state == "delivered").exists(), 30, env.logs)
    env.kill(proc)
    wait_until(lambda: jobs()[0].status == "done", 30, env.logs)  # the job ends while no channel runs
    start_channel(env, stub)
    [reply] = wait_replies(env, stub, USER, 1)
    assert "slow one" in reply and len(stub.chat(USER)) == 1


def test_429_storm_delays_but_loses_and_duplicates_nothing(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.storm, stub.retry_after = 8, 1
    for i in range(3):
        stub.user_message(f"storm {i}", USER)
    wait_replies(env, stub, USER, 3, timeout=90)
    time.sleep(1.0)
    assert sorted(r.split("echo: ")[1] for r in replies(stub, USER)) == ["storm 0", "storm 1", "storm 2"]
    assert len(stub.chat(USER)) == 3 and stub.storm == 0
    state = next(c for c in json.loads(env.cli("status", "--json").stdout)["channels"] if c["platform"] == "telegram")
    assert state["backlog"] == 0 and "429" in state["last_error"]


def test_long_reply_is_split_without_breaking_code_blocks(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("[[long:10000]] write it all", USER)
    wait_until(lambda: any(m["reply_markup"] and "close:" in json.dumps(m["reply_markup"]) for m in stub.chat(USER)),
               60, env.logs)  # the last part carries the buttons
    time.sleep(1.0)
    parts = stub.texts(USER)
    assert len(parts) >= 3 and all(len(p) <= 4096 for p in parts)
    for part in parts:
        fences = [line for line in part.split("\n") if line.strip().startswith("```")]
        assert len(fences) % 2 == 0, part[:200]
    whole = "".join(parts)
    blocks = jobs()[0].reply_message.content.count("def block_")
    assert all(f"def block_{i}()" in whole for i in range(blocks))
    assert [b["text"] for b in stub.chat(USER)[-1]["reply_markup"]["inline_keyboard"][0]] == ["Move…", "Close task"]


def test_forum_topic_binds_to_one_task(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("deploy the staging server", USER, GROUP, chat_type="supergroup", topic=77)
    wait_replies(env, stub, GROUP, 1)
    stub.user_message("completely unrelated: bake a cake", USER, GROUP, chat_type="supergroup", topic=77)
    wait_replies(env, stub, GROUP, 2)
    first, second = jobs()
    assert second.task_id == first.task_id and second.decision_source == "thread"
    assert all(m["message_thread_id"] == 77 for m in stub.chat(GROUP))


def test_reply_to_a_bot_message_binds_to_its_task(tg, stub):
    env = tg(task={"routing_confidence_threshold": 1.0})  # the router would start a new task every time
    start_channel(env, stub)
    stub.user_message("refactor the parser", USER)
    wait_replies(env, stub, USER, 1)
    stub.user_message("something else entirely", USER)
    wait_replies(env, stub, USER, 2)
    first_reply = stub.chat(USER)[0]["message_id"]
    stub.user_message("and add tests", USER, reply_to=first_reply)
    wait_replies(env, stub, USER, 3)
    first, other, third = jobs()
    assert other.task_id != first.task_id
    assert third.task_id == first.task_id and third.decision_source == "thread"


def test_strangers_get_one_refusal_line_and_an_audit_record(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("let me in", 99)
    stub.user_message("hi from a foreign group", USER, -999, chat_type="group")
    wait_until(lambda: stub.texts(99) and stub.texts(-999), 30, env.logs)
    time.sleep(1.0)
    assert stub.texts(99) == ["This bot is private: your Telegram user id 99 is not on its allowlist. "
                              "Nothing was sent to an agent."]
    assert len(stub.texts(-999)) == 1 and jobs() == []
    lines = [json.loads(x) for f in env.output.glob("audit/*/command_permission.jsonl")
             for x in f.read_text().splitlines()]
    refused = [x for x in lines if x["event"] == "refused_request"]
    assert {x["user_id"] for x in refused} == {"telegram:99", "telegram:42"} and not any(x["allowed"] for x in refused)
    assert stub.token not in env.logs()


def test_bad_input_gets_a_defined_answer(tg, stub):
    env = tg(task={"max_content_bytes": 500})
    start_channel(env, stub)
    stub.user_message(None, USER, extra={"sticker": {"file_id": "x", "width": 1, "height": 1}})
    wait_until(lambda: stub.texts(USER), 30, env.logs)
    stub.user_message("/frobnicate now", USER)
    wait_until(lambda: len(stub.texts(USER)) >= 2, 30, env.logs)
    stub.user_message("x" * 2000, USER)
    wait_until(lambda: len(stub.texts(USER)) >= 3, 30, env.logs)
    stub.user_message("fixed typo", USER, kind="edited_message")
    wait_until(lambda: len(stub.texts(USER)) >= 4, 30, env.logs)
    sticker, unknown, big, edit = stub.texts(USER)
    assert sticker.startswith("Only text messages for now")
    assert unknown == "unknown command /frobnicate; try /help"
    assert big.startswith("Not sent to the agent: content is 2000 bytes")
    assert edit.startswith("Edits are not applied")
    assert jobs() == []


def test_commands_and_buttons(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("/new release notes", USER)
    wait_until(lambda: stub.texts(USER), 30, env.logs)
    assert stub.texts(USER)[0].startswith("task #1 created and in use")
    stub.user_message("/task list", USER)
    wait_until(lambda: len(stub.texts(USER)) >= 2, 30, env.logs)
    assert "#1 [open] release notes" in stub.texts(USER)[1]
    stub.user_message("/status", USER)
    wait_until(lambda: len(stub.texts(USER)) >= 3, 30, env.logs)
    assert "workers alive: 1" in stub.texts(USER)[2]
    stub.user_message("[[sleep:30]] long job", USER)
    working = wait_until(lambda: [m for m in stub.chat(USER) if "working" in m["text"]], 30, env.logs)[0]
    stub.press(USER, USER, working["message_id"], working["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    failed = wait_until(lambda: [m for m in stub.chat(USER) if "cancelled" in m["text"] and m["reply_markup"]], 30,
                        env.logs)[0]
    assert jobs()[0].status == "cancelled" and stub.count("answerCallbackQuery") == 1
    buttons = {b["text"]: b["callback_data"] for b in failed["reply_markup"]["inline_keyboard"][0]}
    stub.press(99, USER, failed["message_id"], buttons["Retry"])  # a stranger's press does nothing
    stub.press(USER, USER, failed["message_id"], buttons["Close task"])
    wait_until(lambda: stub.count("answerCallbackQuery") == 3, 30, env.logs)
    from alter0.models import Task
    assert Task.get_by_id(1).status == "closed" and jobs()[0].status == "cancelled"


def memory_of(task_id):
    from alter0.models import TaskMemory
    mem = TaskMemory.get_or_none(TaskMemory.task == task_id)
    return " ".join(t["content"] for t in mem.turns) + (mem.summary or "") if mem else ""


def test_move_a_misrouted_message_with_the_command_and_the_button(tg, stub):
    env = tg()
    start_channel(env, stub)
    stub.user_message("/new login page", USER)
    stub.user_message("/new billing export", USER)  # in use from now on: every message goes here
    wait_until(lambda: len(stub.texts(USER)) >= 2, 30, env.logs)
    stub.user_message("/task use none", USER)
    wait_until(lambda: len(stub.texts(USER)) >= 3, 30, env.logs)
    stub.user_message("the login form needs a password field", USER)  # task 1
    wait_replies(env, stub, USER, 1)
    stub.user_message("#1 add a VAT column to the billing export", USER)  # named task 1: misrouted
    wait_replies(env, stub, USER, 2)
    wrong = jobs()[-1]
    assert wrong.task_id == 1 and "VAT column" in memory_of(1)
    # /move N: my last message goes to task 2; its reply reappears there (the misrouted reply is replaced)
    stub.user_message("/move 2", USER)
    wait_until(lambda: any("moved to task #2" in t for t in stub.texts(USER)), 30, env.logs)
    wait_until(lambda: any(t.startswith("task #2 · moved") and "VAT column" in t for t in stub.texts(USER)), 60,
               lambda: f"{stub.texts(USER)}\n{env.logs()}")
    moved = jobs()[-1]
    assert moved.moved_from == wrong.id and moved.task_id == 2 and moved.status == "done"
    assert "VAT column" not in memory_of(1) and "VAT column" in memory_of(2)
    # repeating it does nothing
    stub.user_message("/move 2", USER)
    wait_until(lambda: any("already in task #2" in t for t in stub.texts(USER)), 30, env.logs)
    assert len(jobs()) == 3 and len([j for j in jobs() if j.moved_from]) == 1
    # the "Move…" button on a reply offers the other open tasks; picking one moves the message
    stub.user_message("#2 the login page should remember me", USER)
    wait_replies(env, stub, USER, 3)  # the moved message's reply replaced the misrouted one
    wrong2 = jobs()[-1]
    assert wrong2.task_id == 2
    reply = [m for m in stub.chat(USER) if "remember me" in m["text"] and m["reply_markup"]][-1]
    buttons = {b["text"]: b["callback_data"] for b in reply["reply_markup"]["inline_keyboard"][0]}
    stub.press(USER, USER, reply["message_id"], buttons["Move…"])
    pick = wait_until(lambda: [m for m in stub.chat(USER) if m["text"].startswith(f"Move job #{wrong2.id}")],
                      30, env.logs)[0]
    [[choice]] = pick["reply_markup"]["inline_keyboard"]
    assert choice["text"].startswith("#1 login page")
    stub.press(USER, USER, pick["message_id"], choice["callback_data"])
    wait_until(lambda: any(t.startswith("task #1 · moved") and "remember me" in t for t in stub.texts(USER)), 60,
               lambda: f"{stub.texts(USER)}\n{env.logs()}")
    assert jobs()[-1].moved_from == wrong2.id and jobs()[-1].task_id == 1
    # a stranger's /move refers to nothing of theirs
    assert "remember me" not in memory_of(2)
