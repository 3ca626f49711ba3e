"""The Dramatiq binding on real Redis and PostgreSQL: task locks, ordering across worker processes,
reconnect after a database restart. (The shared pipeline tests run on it too, through ``engine_env``.)"""

from __future__ import annotations

import json
import re
import time

import pytest

from scale_support import Services, assert_task_order, fresh_backend_config, require_services, submitter
from support.helpers import write_config


@pytest.fixture
def services():
    """Services of this test alone (it restarts them)."""
    require_services()
    svc = Services().start()
    yield svc
    svc.stop()


def _wait_all(env, job_ids, timeout=120) -> dict[int, str]:
    from alter0.models import Job
    deadline = time.time() + timeout
    while True:
        rows = {j.id: j.status for j in Job.select(Job.id, Job.status).where(Job.id.in_(job_ids))}
        if all(s in ("done", "failed", "cancelled", "timed_out") for s in rows.values()) or time.time() > deadline:
            return rows
        time.sleep(0.2)


def test_task_lock_is_exclusive_owned_and_expires(scale_services):
    from tasks.dramatiq_engine.app import TaskLocks
    client = scale_services.redis_client(scale_services.fresh()[1])
    locks = TaskLocks(client, "alter0", ttl_sec=0.5)
    # Given a lock held by host A
    assert locks.acquire(7, "hostA:1")
    # Then host B cannot take it, and B's release does nothing
    assert not locks.acquire(7, "hostB:2")
    locks.release(7, "hostB:2")
    assert not locks.acquire(7, "hostB:2")
    # When A keeps renewing it, it outlives its TTL
    for _ in range(4):
        time.sleep(0.2)
        locks.renew()
    assert not locks.acquire(7, "hostB:2")
    # When A dies (no renewal), the lock expires by itself
    locks.held.clear()
    time.sleep(0.7)
    assert locks.acquire(7, "hostB:2")
    locks.release(7, "hostB:2")
    assert locks.acquire(7, "hostC:3")


def test_generate_waits_while_another_host_holds_the_task_lock(make_env, scale_services):
    env = make_env(**fresh_backend_config())
    env.start_worker()
    first = env.send("lock me in")
    # Given another host holds the task's generate lock
    client = scale_services.redis_client(int(env.config["runtime"]["queue"]["broker_url"].rsplit("/", 1)[1]))
    from tasks.dramatiq_engine.app import TaskLocks
    other = TaskLocks(client, "alter0", ttl_sec=30)
    assert other.acquire(first["task_id"], "elsewhere:1")
    # When a message for that task arrives, it routes but does not generate
    job_id = json.loads(env.cli("send", "second turn", "--task", str(first["task_id"]), "--async",
                                "--json").stdout)["job_id"]
    time.sleep(2)
    assert env.job(job_id)["status"] == "generating" and len(env.agent_runs()) == 1
    # Then it generates as soon as the lock is released
    other.release(first["task_id"], "elsewhere:1")
    assert env.wait_job(job_id, 30)["status"] == "done" and len(env.agent_runs()) == 2


def test_one_task_in_order_across_two_worker_processes(make_env, scale_services):
    env = make_env(**fresh_backend_config())
    workers = [env.start_worker(), env.start_worker()]
    rt = submitter(env)
    from alter0 import service
    first, _ = service.submit(rt, "seq 00 [[sleep:0.1]]", "alice")
    task_id = service.wait(first.id, 60).task_id
    jobs = [service.submit(rt, f"seq {k:02d} [[sleep:0.1]]", "alice", task_id=task_id)[0].id for k in range(1, 12)]
    states = _wait_all(env, [first.id, *jobs])
    assert set(states.values()) == {"done"}, (states, env.logs())
    assert_task_order(env.agent_runs(), lambda m: ("t", int(re.search(r"seq (\d+)", m).group(1))))
    replies = [m for m in json.loads(env.cli("task", "show", str(task_id), "--json").stdout)["messages"]
               if m["role"] == "assistant"]
    assert [re.search(r"seq (\d+)", r["content"]).group(1) for r in replies] == [f"{k:02d}" for k in range(12)]
    assert all(w.poll() is None for w in workers)


def test_worker_and_cli_reconnect_after_a_postgres_restart(make_env, services):
    env = make_env(**services.backend_config())
    env.start_worker()
    assert env.send("before the restart")["status"] == "done"
    # Given a generation in flight while PostgreSQL restarts (connections dropped, 1 s down)
    job_id = json.loads(env.cli("send", "during the restart [[sleep:2]]", "--async", "--json").stdout)["job_id"]
    deadline = time.time() + 20
    while not env.agent_runs() or len(env.agent_runs()) < 1 and time.time() < deadline:
        time.sleep(0.05)
    while env.job(job_id)["status"] != "generating" and time.time() < deadline:
        time.sleep(0.05)
    services.restart_postgres(down_sec=1.0)
    # Then the in-flight job still ends with its reply, and new messages are answered
    job = env.wait_job(job_id, 60)
    assert job["status"] == "done", job
    after = env.send("after the restart")
    assert after["status"] == "done" and after["response"] == "echo: after the restart"
    # And the worker is still the one that started (it reconnected rather than died)
    assert len(json.loads(env.cli("status", "--json").stdout)["workers"]) == 1


def test_dramatiq_backend_needs_a_broker_url(tmp_path):
    from alter0.config import load_config
    from alter0.errors import ConfigError
    from tasks.dramatiq_engine.app import Binding
    with pytest.raises(ConfigError, match="broker_url"):  # at start-up, or at the latest when binding
        Binding(load_config(write_config(tmp_path), env={}, overrides={"runtime.queue.backend": "dramatiq"}))


def test_python_m_dramatiq_runs_the_same_binding(make_env, scale_services):
    import subprocess
    import sys
    env = make_env(**fresh_backend_config())
    log = open(env.tmp / "dramatiq-cli.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "dramatiq", "tasks.dramatiq_engine.app:broker", "--processes", "1",
                             "--threads", "2"], env=env.env, cwd=env.tmp, stdout=log, stderr=subprocess.STDOUT)
    env.procs.append(proc)
    answer = env.send("through python -m dramatiq")
    assert answer["status"] == "done" and answer["response"] == "echo: through python -m dramatiq"
    workers = json.loads(env.cli("status", "--json").stdout)["workers"]
    assert len(workers) == 1 and workers[0]["pid"] != proc.pid  # the supervisor runs in the worker process


def test_postgres_pool_gives_a_forked_child_its_own_connection(scale_services):
    import os
    from alter0.database import connect_url
    from alter0.models import ALL_MODELS, Task
    database = connect_url(scale_services.pg_url(scale_services.fresh()[0]))
    with database.bind_ctx(ALL_MODELS):
        database.create_tables(ALL_MODELS)
        Task.create(title="before the fork", scope="user:u", user_id="u")
        parent_conn = database.connection()
        pid = os.fork()
        if pid == 0:  # a gunicorn worker forked after the app opened the database
            os._exit(0 if database.connection() is not parent_conn and Task.select().count() == 1 else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert database.connection() is parent_conn and Task.select().count() == 1
    database.close_all()


def test_postgres_gets_the_same_schema_through_the_same_migrations(tmp_path, scale_services):
    from peewee import SqliteDatabase
    from alter0.config import load_config
    from alter0.migrations import open_current
    from alter0.models import ALL_MODELS
    from alter0.migrations import EXPECTED_VERSION, current_version
    cfg = load_config(write_config(tmp_path), env={"DATABASE_URL": scale_services.pg_url(scale_services.fresh()[0])})
    pg = open_current(cfg)
    pg_again = open_current(cfg)  # a second process starting: nothing to do
    lite = SqliteDatabase(":memory:")
    with lite.bind_ctx(ALL_MODELS):
        lite.create_tables(ALL_MODELS)
    assert current_version(pg) == current_version(pg_again) == EXPECTED_VERSION
    assert sorted(pg.get_tables()) == sorted(lite.get_tables())
    for table in lite.get_tables():
        assert {c.name for c in pg.get_columns(table)} == {c.name for c in lite.get_columns(table)}, table
    pg.close_all()
    pg_again.close_all()
