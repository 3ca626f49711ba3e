"""The pipeline through real worker processes on real database files, driven with the real `alter0` CLI.

Every test here runs on each queue engine (``engine_env``): Huey+SQLite, and Dramatiq+Redis+PostgreSQL
where those services are available (required in CI).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from support.helpers import FIXTURES, pid_alive, wait_until
from support.install import agent_bin


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _replies(env, task_id) -> list:
    view = json.loads(env.cli("task", "show", str(task_id), "--json").stdout)
    return [m for m in view["messages"] if m["role"] == "assistant"]


def test_send_answers_and_follow_up_joins_the_task(engine_env):
    env = engine_env()
    env.start_worker()
    first = env.send("write a haiku about queues")
    assert first["status"] == "done" and first["decision"] == "new"
    assert first["response"] == "echo: write a haiku about queues"
    env.cli("send", "/task use " + str(first["task_id"]))
    second = env.send("and one more about the haiku queues")
    assert second["task_id"] == first["task_id"] and second["decision"] == "existing"
    listing = env.cli("send", "/task list").stdout
    assert f"#{first['task_id']}" in listing
    tasks = json.loads(env.cli("task", "list", "--json").stdout)
    assert [t["id"] for t in tasks] == [first["task_id"]] and {"id", "status", "title"} <= set(tasks[0])


def test_routing_priority_forced_then_explicit_then_new(engine_env):
    env = engine_env(task={"routing_confidence_threshold": 1.0})  # the router can never win: new unless told
    env.start_worker()
    a = env.send("first task about parsing logs")
    b = env.send("second task about css colours")
    assert a["task_id"] != b["task_id"] and b["decision"] == "new"
    explicit = env.send("more on parsing", "--task", str(a["task_id"]))
    assert explicit["task_id"] == a["task_id"] and explicit["decision"] == "existing"
    env.cli("send", f"/task use {b['task_id']}")
    forced = env.send("this goes to the forced task", "--task", str(a["task_id"]))
    assert forced["task_id"] == b["task_id"]
    job = env.job(forced["job_id"])
    assert job["decision_source"] == "forced" and job["route"]["reason"] == "forced by /task use"
    env.cli("send", "/task use none")
    fresh = env.send("more about parsing logs")  # the router may like task A, but never with confidence 1.0
    assert fresh["task_id"] not in (a["task_id"], b["task_id"]) and fresh["decision"] == "new"
    assert env.job(fresh["job_id"])["decision_source"] == "router"


def test_unknown_task_and_oversize_content_are_refused(engine_env):
    env = engine_env(task={"max_content_bytes": 100})
    env.start_worker()
    missing = env.cli("send", "hi", "--task", "999", check=False)
    assert missing.returncode == 4 and "task 999 does not exist" in missing.stderr
    big = env.cli("send", "x" * 101, check=False)
    assert big.returncode == 2 and "limit is 100 bytes" in big.stderr
    assert "Traceback" not in big.stderr + missing.stderr


def test_same_task_messages_generate_in_order_never_at_once(engine_env):
    env = engine_env()
    env.start_worker()
    task = env.send("set up the task")["task_id"]
    ids = [json.loads(env.cli("send", f"step {i} [[sleep:0.6]]", "--task", str(task), "--async", "--json").stdout)
           ["job_id"] for i in range(3)]
    jobs = [env.wait_job(i) for i in ids]
    assert all(j["status"] == "done" for j in jobs), jobs
    runs = [r for r in env.agent_runs() if r.get("event") == "reply" and "step" in r["prompt"]]
    order = [int(r["prompt"].rsplit("step ", 1)[1].split()[0]) for r in sorted(runs, key=lambda r: r["start"])]
    assert order == [0, 1, 2]
    for x, y in zip(runs, runs[1:]):
        assert not _overlap(x, y), "two generations of one task overlapped"


def test_different_tasks_generate_in_parallel(engine_env):
    env = engine_env(task={"routing_confidence_threshold": 1.0})
    env.start_worker()
    a = env.send("task A")["task_id"]
    b = env.send("task B")["task_id"]
    # each generation waits for the other to start (at most 20 s): they overlap only if both run at once
    ja = json.loads(env.cli("send", "slow A [[meet:ab=2]]", "--task", str(a), "--async", "--json").stdout)["job_id"]
    jb = json.loads(env.cli("send", "slow B [[meet:ab=2]]", "--task", str(b), "--async", "--json").stdout)["job_id"]
    assert env.wait_job(ja)["status"] == "done" and env.wait_job(jb)["status"] == "done"
    runs = {r["prompt"].split()[-2]: r for r in env.agent_runs() if "slow" in r["prompt"] and r.get("event") == "reply"}
    assert _overlap(runs["A"], runs["B"]), "generations of two tasks did not overlap"


def test_long_generation_does_not_delay_routing_of_another_message(engine_env):
    env = engine_env(runtime={"queue": {"workers": 2}})
    env.start_worker()
    # the long generation runs until the test lets it go on (at most 60 s)
    slow = json.loads(env.cli("send", "long job [[wait-file:go]]", "--async", "--json").stdout)["job_id"]
    env.wait_job(slow, until=("generating",))
    other = json.loads(env.cli("send", "quick question from someone else", "--user", "bob", "--async",
                               "--json").stdout)["job_id"]
    routed = env.wait_job(other, timeout=45, until=("generating", "closing", "done"))
    assert routed["status"] in ("generating", "closing", "done") and routed["task_id"]
    assert env.job(slow)["status"] == "generating", "routing waited for the long generation"
    (env.tmp / "state" / "go").touch()
    assert env.wait_job(slow)["status"] == "done"


def test_a_generation_waiting_for_a_slot_runs_when_one_frees(engine_env):
    # two worker threads: one generation slot (the other thread stays free for routing and closing). The
    # generations that find it taken are parked and run by the worker whose generation frees the slot; the
    # reclaim sweep is off, so nothing else could run them.
    env = engine_env(runtime={"queue": {"workers": 2, "reclaim_interval_sec": 3600}})
    env.start_worker()
    jobs = [json.loads(env.cli("send", f"slow {who} [[sleep:1]]", "--user", who, "--async", "--json").stdout)[
        "job_id"] for who in ("ana", "bob", "cy")]
    assert [env.wait_job(j, timeout=30)["status"] for j in jobs] == ["done"] * 3
    runs = [r for r in env.agent_runs() if "slow" in r["prompt"] and r.get("event") == "reply"]
    assert len(runs) == 3
    assert not any(_overlap(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]), "two generations shared a slot"


def test_a_generation_waiting_for_a_slot_of_a_killed_worker_runs_after_the_restart(engine_env):
    # Given one generation slot, taken by a slow agent, and a second generation waiting for it in the same
    # worker (remembered by the process only: nothing in the job row says it waits)
    env = engine_env(runtime={"queue": {"workers": 2}})
    worker = env.start_worker()
    slow = json.loads(env.cli("send", "slow ana [[child]] [[wait-file:go]]", "--user", "ana", "--async",
                              "--json").stdout)["job_id"]
    wait_until(lambda: any("slow ana" in r["prompt"] for r in env.agent_runs()), 30, "the slow agent to start")
    waiting = json.loads(env.cli("send", "quick bob", "--user", "bob", "--async", "--json").stdout)["job_id"]
    wait_until(lambda: env.job(waiting)["status"] == "generating", 30, "the second job to wait for the slot")
    time.sleep(3)  # longer than the dispatch deadline: its own worker's sweeps left it waiting, unsent
    assert env.job(waiting)["status"] == "generating"
    assert not any("quick bob" in r["prompt"] for r in env.agent_runs()), "ran without a free slot"
    # When the worker is killed and started again
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    env.start_worker()
    (env.tmp / "state" / "go").touch()  # the slow job's agent runs again, and now answers at once
    # Then both jobs are answered, each once
    for job_id in (waiting, slow):
        job = env.wait_job(job_id, timeout=60)
        assert job["status"] == "done" and len(_replies(env, job["task_id"])) == 1, job
    assert sum("quick bob" in r["prompt"] for r in env.agent_runs() if r.get("event") == "reply") == 1


def test_transient_errors_retry_then_succeed(engine_env):
    env = engine_env()
    env.start_worker()
    result = env.send("flaky [[fail-first:2]]")
    assert result["status"] == "done"
    job = env.job(result["job_id"], "--events")
    assert job["attempts"]["generate"] == 3
    assert [e["data"]["kind"] for e in job["events"] if e["kind"] == "retry"] == ["exit_error", "exit_error"] or \
        len([e for e in job["events"] if e["kind"] == "retry"]) == 2


def test_permanent_error_fails_fast_with_a_clear_message(engine_env):
    env = engine_env()
    env.start_worker()
    result = env.cli("send", "broken [[exit:3]]", "--json", check=False)
    assert result.returncode == 7
    job = json.loads(result.stdout)
    assert job["status"] == "failed" and job["error"]["kind"] == "exit_error"
    assert "exit" in job["error"]["message"] and env.job(job["job_id"])["attempts"]["generate"] == 1


def test_missing_executor_binary_fails_at_once(engine_env):
    env = engine_env()
    agent = env.tmp / "agent-copy.py"
    agent.write_bytes(FIXTURES.joinpath("fake_agent.py").read_bytes())
    agent.chmod(0o755)
    env.config["executor"]["command"] = [str(agent)]
    env.write_config()
    env.start_worker()  # the preflight saw the binary ...
    agent.unlink()  # ... which is then uninstalled under the running worker
    result = env.cli("send", "hello", "--json", check=False)
    job = json.loads(result.stdout)
    assert job["status"] == "failed" and job["error"]["kind"] == "not_found"
    assert "not found" in job["error"]["message"].lower() and "Traceback" not in result.stderr
    assert env.job(job["job_id"])["attempts"]["generate"] == 1


def test_worker_refuses_to_start_without_its_executor(engine_env):
    env = engine_env(executor={"command": ["/nonexistent/agent-binary"]})
    result = env.cli("worker", check=False, timeout=60)
    assert result.returncode != 0 and "/nonexistent/agent-binary" in result.stderr
    assert "Traceback" not in result.stderr


def test_cancel_kills_the_executor_process_group(engine_env):
    env = engine_env()
    env.start_worker()
    job_id = json.loads(env.cli("send", "forever [[child]] [[sleep:60]]", "--async", "--json").stdout)["job_id"]
    deadline = time.time() + 20
    while not any(r.get("event") == "child" for r in env.agent_runs()) and time.time() < deadline:
        time.sleep(0.1)
    run = next(r for r in env.agent_runs() if r.get("event") == "child")
    assert pid_alive(run["pid"]) and pid_alive(run["child_pid"])
    env.cli("job", "cancel", str(job_id))
    job = env.wait_job(job_id, timeout=20)
    assert job["status"] == "cancelled"
    deadline = time.time() + 10
    while (pid_alive(run["pid"]) or pid_alive(run["child_pid"])) and time.time() < deadline:
        time.sleep(0.1)
    assert not pid_alive(run["pid"]) and not pid_alive(run["child_pid"]), "executor or its child survived cancel"
    again = env.cli("job", "cancel", str(job_id))
    assert "cancelled" in again.stdout
    done = env.send("fine")
    conflict = env.cli("job", "cancel", str(done["job_id"]), check=False)
    assert conflict.returncode == 5 and "already finished" in conflict.stderr


@pytest.mark.parametrize("stage", ["route", "generate", "close"])
def test_worker_killed_mid_stage_completes_after_restart_with_one_reply(engine_env, stage, monkeypatch):
    env = engine_env()
    text = "survive the crash" + (" [[child]] [[sleep:8]]" if stage == "generate" else "")
    if stage != "generate":
        env.env["ALTER0_FAULT_DELAY"] = f"{stage}=30"
    worker = env.start_worker()
    job_id = json.loads(env.cli("send", text, "--async", "--json").stdout)["job_id"]
    state = {"route": "routing", "generate": "generating", "close": "closing"}[stage]
    deadline = time.time() + 20
    while env.job(job_id)["status"] != state and time.time() < deadline:
        time.sleep(0.05)
    if stage == "generate":
        time.sleep(1)  # the fake agent is inside its 8 s answer
    assert env.job(job_id)["status"] == state
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    env.env.pop("ALTER0_FAULT_DELAY", None)
    env.start_worker()
    job = env.wait_job(job_id, timeout=60)
    assert job["status"] == "done", job
    assert len(_replies(env, job["task_id"])) == 1
    if stage == "generate":  # the executor the dead worker left behind, and its child, were killed
        first = next(r for r in env.agent_runs() if r.get("event") == "child")
        deadline = time.time() + 10
        while (pid_alive(first["pid"]) or pid_alive(first["child_pid"])) and time.time() < deadline:
            time.sleep(0.1)
        assert not pid_alive(first["pid"]) and not pid_alive(first["child_pid"])


@pytest.mark.parametrize("agent", ["codex", "claude"])
def test_second_turn_resumes_the_stored_session(engine_env, agent):
    env = engine_env(executor={"name": "auto" if agent == "codex" else "claude"})
    calls = agent_bin(env, agent)
    env.start_worker()
    first = env.send("start a session")
    assert first["status"] == "done", env.job(first["job_id"])
    task = json.loads(env.cli("task", "show", str(first["task_id"]), "--json").stdout)
    assert task["executor"] == agent and task["session_id"]
    second = env.send("continue please", "--task", str(first["task_id"]))
    assert second["status"] == "done"
    argvs = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    assert len(argvs) == 2
    if agent == "codex":
        assert "resume" not in argvs[0] and argvs[1][argvs[1].index("resume") + 1] == task["session_id"]
    else:
        assert f"--resume={task['session_id']}" in argvs[1] and not any(a.startswith("--resume") for a in argvs[0])


def test_unknown_codex_event_types_are_ignored(engine_env):
    env = engine_env(executor={"name": "codex"})
    agent_bin(env, "codex", mode="unknown_events")
    env.start_worker()
    result = env.send("go")
    assert result["status"] == "done" and result["response"]


def test_admin_commands_denied_for_others_and_audited(engine_env):
    env = engine_env()
    denied = env.cli("send", "/executor codex", "--user", "bob", check=False)
    assert denied.returncode == 6 and "admin command" in denied.stderr
    allowed = env.cli("send", "/executor command", "--user", "admin")
    assert "executor.name" in allowed.stdout
    lines = [json.loads(line) for p in sorted((env.output / "audit").glob("*/command_permission.jsonl"))
             for line in p.read_text().splitlines()]
    assert [(r["user_id"], r["allowed"]) for r in lines] == [("bob", False), ("admin", True)]
