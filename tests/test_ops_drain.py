"""Graceful drain: a stopping worker finishes in-flight stages within the drain timeout, else leaves them
for the next start; a backup taken while messages flow holds every answer committed before it."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from alter0.config import load_config
from alter0.ops.backup import backup, restore
from alter0.ops.verify import verify


def worker_rows(env) -> list[tuple]:
    conn = sqlite3.connect(env.output / "db" / "alter0.db")
    try:
        return conn.execute("SELECT pid, state, in_flight FROM worker").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_finishes_an_in_flight_slow_job_within_the_timeout(make_env, sig):
    # Given a worker generating a 3 s reply, with a 10 s drain timeout
    env = make_env(runtime={"shutdown": {"drain_timeout_sec": 10}})
    worker = env.start_worker()
    job_id = env.send("slow one [[sleep:3]]", "--async")["job_id"]
    env.reach(job_id, ("generating",))
    # When the worker is told to stop
    stopped_at = time.monotonic()
    worker.send_signal(sig)
    # Then no new job starts: one sent now stays queued
    queued_id = env.send("sent during the drain", "--async")["job_id"]
    assert worker.wait(timeout=30) == 0
    took = time.monotonic() - stopped_at
    # And the in-flight stage finished within the drain timeout: the reply is stored. (The job's
    # close stage, queued after the drain began, is left for the next start like any new work.)
    job = env.job(job_id)
    assert job["status"] in ("closing", "done") and job["response"], (job, env.logs())
    assert took < 10 + 5, took
    assert env.job(queued_id)["status"] == "queued"
    assert [(pid, state) for pid, state, _ in worker_rows(env)] == [(worker.pid, "stopped")]
    # And the next worker ends both jobs, without generating the first one again
    env.start_worker()
    assert env.wait_job(job_id, timeout=30)["status"] == "done"
    assert env.wait_job(queued_id, timeout=30)["status"] == "done"
    newest = [run["prompt"].rsplit("New message:\n", 1)[-1] for run in env.agent_runs() if run.get("event") == "reply"]
    assert sum("slow one" in message for message in newest) == 1


def test_drain_timeout_leaves_the_job_for_the_next_start(make_env):
    # Given a 1 s drain timeout and a 6 s generation in flight
    env = make_env(runtime={"shutdown": {"drain_timeout_sec": 1}})
    worker = env.start_worker()
    job_id = env.send("too slow [[sleep:6]]", "--async")["job_id"]
    env.reach(job_id, ("generating",))
    # When stopping: the worker gives up after the drain timeout
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert time.monotonic() - started < 1 + 10
    job = env.job(job_id)
    assert job["status"] not in ("done", "failed", "cancelled", "timed_out"), job
    # Then the next start reclaims it and it ends with exactly one reply
    env.start_worker()
    job = env.wait_job(job_id, timeout=60)
    assert job["status"] == "done", (job, env.logs())
    conn = sqlite3.connect(env.output / "db" / "alter0.db")
    replies = conn.execute("SELECT COUNT(*) FROM message WHERE role = 'assistant' AND task_id = "
                           "(SELECT task_id FROM job WHERE id = ?)", (job_id,)).fetchone()[0]
    conn.close()
    assert replies == 1


def test_backup_while_messages_flow_restores_every_committed_message(make_env, tmp_path):
    # Given a worker answering a stream of messages
    env = make_env()
    env.start_worker()
    cfg = load_config(env.config_path, env={})
    sent = [env.send(f"flow {i} [[sleep:0.05]]", "--async")["job_id"] for i in range(40)]
    time.sleep(0.5)
    # When a backup is taken while they are still being answered
    conn = sqlite3.connect(env.output / "db" / "alter0.db")
    before = {r[0] for r in conn.execute("SELECT id FROM message")}
    archive = backup(cfg)
    conn.close()
    more = [env.send(f"after {i}", "--async")["job_id"] for i in range(5)]
    for job_id in sent + more:
        env.wait_job(job_id, timeout=60)
    # Then the archive restores (into a fresh install) to a database that verifies
    # and holds every message committed before the backup started
    other = make_env()
    other_cfg = load_config(other.config_path, env={})
    restore(other_cfg, archive)
    assert all(c.ok for c in verify(other_cfg)), verify(other_cfg)
    restored = sqlite3.connect(other.output / "db" / "alter0.db")
    ids = {r[0] for r in restored.execute("SELECT id FROM message")}
    jobs = restored.execute("SELECT COUNT(*) FROM job").fetchone()[0]
    restored.close()
    assert before and before <= ids
    assert jobs >= len(before) // 2
