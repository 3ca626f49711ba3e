"""Bounded memory and storage: an agent that echoes its whole prompt twice, 50 turns in one task, keeps the
database growing by a bounded step per turn, every prompt under its counted token budget, and latency flat.
Long replies are cut in the database with a marker and kept whole once, gzipped."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import statistics
import time

from alter0.bounded import CUT_MARK

TURNS = 50
BUDGET = 3000
REPLY_CAP = 8000


def _logical_bytes(env) -> int:
    """Pages in use (the WAL's included) times the page size: the database's size, not its files' slack."""
    conn = sqlite3.connect(f"file:{env.output / 'db' / 'alter0.db'}?mode=ro", uri=True)
    try:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
    finally:
        conn.close()
    return (pages - free) * size


def test_fifty_echo_turns_keep_size_and_latency_flat(make_env):
    env = make_env(task={"max_reply_chars": REPLY_CAP, "memory_turn_chars": 4000, "prompt_token_budget": BUDGET})
    env.start_worker()
    first = env.send("[[echo-prompt]] turn 0")
    assert first["status"] == "done"
    task_id = str(first["task_id"])
    took, size = [], {}
    for i in range(1, TURNS):
        started = time.monotonic()
        job = env.send(f"[[echo-prompt]] turn {i}", "--task", task_id)
        took.append(time.monotonic() - started)
        assert job["status"] == "done", job
        if i in (10, 25, TURNS - 1):
            size[i] = _logical_bytes(env)
    early, late = (size[25] - size[10]) / 15, (size[TURNS - 1] - size[25]) / (TURNS - 1 - 25)
    assert late <= early * 1.5 + 16384, (size, early, late)
    assert size[TURNS - 1] < 8 << 20, size
    assert statistics.median(took[-10:]) <= 2 * statistics.median(took[4:14]) + 0.5, took
    print(f"\n50 echo turns: logical db bytes at turns 10/25/49 {size}; median send latency turns 5-14 "
          f"{statistics.median(took[4:14]):.2f} s, turns 40-49 {statistics.median(took[-10:]):.2f} s")

    view = env.job(job["job_id"], "--events")
    prompt = [e for e in view["events"] if e["kind"] == "stage.finished" and e["stage"] == "generate"][-1]["data"][
        "prompt"]
    assert 0 < prompt["tokens"] <= BUDGET and prompt["budget"] == BUDGET and prompt["turns_left_out"] > 0
    runs = [r for r in env.agent_runs() if r.get("event") == "reply"]
    assert len(runs) == TURNS and max(len(r["prompt"]) for r in runs) < 40_000

    reply = view["response"]
    assert len(reply) <= REPLY_CAP and CUT_MARK in reply
    found = re.search(r"the whole reply is in (\S+)\]$", reply)
    assert found, reply[-300:]
    whole = found.group(1)
    with gzip.open(whole, "rt", encoding="utf-8") as fh:
        text = fh.read()
    assert len(text) > REPLY_CAP and text.startswith(reply[:1000])


def test_status_shows_database_and_wal_size(a0):
    a0.send("hello", "--async")
    data = json.loads(a0.cli("status", "--json").stdout)["storage"]
    assert data["db_bytes"] > 0 and data["wal_bytes"] >= 0
    assert "database:" in a0.cli("status").stdout
