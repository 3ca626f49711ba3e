"""Degenerate replies: found (a sentence a third time, English and Chinese), collapsed, kept out of task memory."""

from alter0 import repetition

LOOP = "The boundaries of reality are ever-changing. " * 20


def test_loops_are_found_and_collapsed():
    assert repetition.degenerate(LOOP) and repetition.max_repeats(LOOP) == 20
    assert repetition.collapse(LOOP) == "The boundaries of reality are ever-changing."
    zh = "数据库是存储数据的地方。" * 4
    assert repetition.degenerate(zh) and repetition.collapse(zh) == "数据库是存储数据的地方。"
    fine = "Queues wait in line.\nWorkers take the next job.\nDone at dawn."
    assert not repetition.degenerate(fine) and repetition.collapse(fine) == fine
    short = "Yes. Yes. Yes. Yes."  # too short to count as a loop
    assert not repetition.degenerate(short)
    twice = "Use ls -la to list files. Use ls -la to list files."
    assert not repetition.degenerate(twice) and repetition.collapse(twice) == "Use ls -la to list files."
    assert repetition.trim_partial("One. Two! Thr") == "One. Two!" and repetition.trim_partial("no end") == "no end"


def test_memory_never_refeeds_a_loop(make_env):
    env = make_env()
    env.start_worker()
    first = env.send("start")
    from alter0.memory import append_turn, build_prompt
    from alter0.models import Message, Task
    env.db()
    task = Task.get_by_id(first["task_id"])
    reply = Message.create(task=task.id, role="assistant", content=LOOP, user_id="alter0", channel_id="")
    append_turn(_cfg(env), task.id, reply)
    nxt = Message.create(task=task.id, role="user", content="and now?", user_id="local", channel_id="")
    prompt, _ = build_prompt(_cfg(env), task, nxt, resume=False)
    assert prompt.count("The boundaries of reality are ever-changing") == 1, prompt


def _cfg(env):
    from alter0.config import load_config
    return load_config(env.config_path, env={})
