"""The real codex and claude CLIs (npm), offline, against tests/support/model_stub.py.

Binaries: ``$ALTER0_AGENTS_BIN`` or ``<repo>/.agents/node_modules/.bin`` (``scripts/ci/install-agents.sh``).
Absent: skipped locally, a failure when CI=true. Each case runs once per CLI, first through the adapter
(build_executor + ExecRequest), then through a real alter0 worker and the ``alter0`` CLI.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from alter0.executors import ExecRequest, ExecutorError, build_executor
from alter0.executors.process import group_alive
from support.helpers import ROOT, default_settings, exec_request, group_pids, pid_alive, skip_or_fail, wait_until
from support.model_stub import ModelStub

AGENTS = ("codex", "claude")
OVERLOAD = {"codex": "429", "claude": "529"}
STUB_KEY = "stub-key-1234"
TIMINGS: dict[str, list[float]] = {}
#: An ExecRequest in ``tmp_path/work``: make_request(tmp_path, prompt, session_id=None, timeout=60, **kw).
make_request = functools.partial(exec_request, timeout=60)


@pytest.fixture(scope="session")
def agents_bin() -> Path:
    """The directory holding the real `codex` and `claude`."""
    bin_dir = Path(os.environ.get("ALTER0_AGENTS_BIN") or ROOT / ".agents" / "node_modules" / ".bin")
    missing = [a for a in AGENTS if not (bin_dir / a).exists()]
    if missing or not shutil.which("node"):
        skip_or_fail(f"real agent CLIs not found in {bin_dir} ({', '.join(missing) or 'node'} missing); "
                     "run scripts/ci/install-agents.sh or set ALTER0_AGENTS_BIN")
    return bin_dir


@pytest.fixture
def stub():
    with ModelStub() as server:
        yield server


def agent_config(agent: str, home: Path, base_url: str, bin_dir: Path) -> dict:
    """executor.* settings (nested) that run ``agent`` against the stub at ``base_url``, isolated in ``home``.

    The model server is given only through executor.base_url and executor.api_key (no extra_args, no
    config file, no ANTHROPIC_* variables): the adapters turn them into what each CLI understands."""
    return {"name": agent, "home": str(home), "base_url": base_url, "api_key": STUB_KEY,
            "env": {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}}


def settings_for(agent: str, tmp_path: Path, base_url: str, bin_dir: Path) -> dict:
    """Flat settings for build_executor."""
    executor = agent_config(agent, tmp_path / "agent-home", base_url, bin_dir)
    return default_settings(runtime__output_dir=str(tmp_path / "output"),
                            **{f"executor.{k}": v for k, v in executor.items()})


def timed_run(agent: str, ex, req: ExecRequest):
    """Run one turn and record its wall-clock time."""
    started = time.monotonic()
    result = ex.run(req)
    TIMINGS.setdefault(agent, []).append(time.monotonic() - started)
    return result


def _timings_line() -> str:
    return ", ".join(f"{a}: {min(t):.2f}-{max(t):.2f} s/turn ({len(t)} turns)" for a, t in TIMINGS.items())


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    """Print the measured wall-clock time per real turn (visible with -s)."""
    yield
    if TIMINGS:
        print(f"\nreal agent turn times: {_timings_line()}")


# --- adapter level ------------------------------------------------------------------------------------

@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_two_turns_resume_and_usage(agent, agents_bin, stub, tmp_path):
    ex = build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin))
    first = timed_run(agent, ex, make_request(tmp_path, "first prompt: what is 2+2?"))
    assert first.session_id and "tail='first prompt: what is 2+2?'" in first.text
    second = timed_run(agent, ex, make_request(tmp_path, "second prompt, a bit longer", first.session_id))
    assert second.session_id == first.session_id
    assert "second prompt, a bit longer" in second.text and "user_turns=2" in second.text
    turn2 = stub.model_requests()[-1]
    assert any("first prompt: what is 2+2?" in t for t in turn2["user_texts"])  # the earlier turn was resent
    assert all(r["auth"] for r in stub.model_requests())  # executor.api_key reached the server
    assert STUB_KEY not in " ".join(ex.argv(make_request(tmp_path, "x")))  # never on a command line
    for usage in (first.usage, second.usage):
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        if agent == "claude":
            assert usage["cost_usd"] > 0
    store = tmp_path / "agent-home" / agent
    assert any(store.rglob("*.jsonl")), f"{agent} kept no session store under its isolated home"


@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_auth_failure(agent, agents_bin, stub, tmp_path):
    stub.set_mode("401")
    ex = build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin))
    started = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        ex.run(make_request(tmp_path, "hello"))
    assert info.value.kind == "auth" and info.value.retryable is False
    assert "401" in info.value.message or "invalid api key" in info.value.message.lower()
    assert time.monotonic() - started < 20
    assert len(stub.model_requests()) == 1  # the CLI itself did not retry


@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_overload_then_ok(agent, agents_bin, stub, tmp_path):
    stub.set_mode(OVERLOAD[agent], times=1)
    ex = build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin))
    with pytest.raises(ExecutorError) as info:
        ex.run(make_request(tmp_path, "hello"))
    assert info.value.kind == "rate_limited" and info.value.retryable
    assert "FAKE-REPLY" in ex.run(make_request(tmp_path, "hello again")).text


@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_hanging_server_times_out(agent, agents_bin, stub, tmp_path):
    stub.set_mode("hang")
    spawned: list[int] = []
    ex = build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin))
    with pytest.raises(ExecutorError) as info:
        # 15 s: the CLI must start and reach the stub first (node's start took over 8 s on a loaded CI machine)
        ex.run(make_request(tmp_path, "hello", timeout=15, on_process=spawned.append))
    assert info.value.kind == "timeout" and "15 s" in info.value.message
    assert stub.model_requests(), "the CLI never reached the stub"
    assert not group_alive(spawned[0])


def test_adapter_codex_unreachable_server_times_out(agents_bin, tmp_path):
    ex = build_executor("codex", settings_for("codex", tmp_path, "http://127.0.0.1:9", agents_bin))
    spawned: list[int] = []
    warnings: list[dict] = []
    with pytest.raises(ExecutorError) as info:
        ex.run(make_request(tmp_path, "hello", timeout=5, on_process=spawned.append,
                            on_event=lambda kind, data: warnings.append(data) if kind == "executor.warning" else None))
    assert info.value.kind == "timeout"
    assert any("Reconnecting" in w["message"] for w in warnings)
    assert not group_alive(spawned[0])


def test_adapter_claude_unreachable_server_is_transient(agents_bin, tmp_path):
    ex = build_executor("claude", settings_for("claude", tmp_path, "http://127.0.0.1:9", agents_bin))
    with pytest.raises(ExecutorError) as info:
        ex.run(make_request(tmp_path, "hello", timeout=60))
    assert info.value.kind == "transient" and "connect" in info.value.message.lower()


def test_adapter_codex_dropped_connection_is_transient(agents_bin, stub, tmp_path):
    stub.set_mode("drop", times=1)
    ex = build_executor("codex", settings_for("codex", tmp_path, stub.url, agents_bin))
    with pytest.raises(ExecutorError) as info:
        ex.run(make_request(tmp_path, "hello"))
    assert info.value.kind == "transient" and "disconnected" in info.value.message


def pids_running(argv: list[str]) -> list[int]:
    """Live pids whose command line is exactly ``argv``."""
    wanted = ("\0".join(argv) + "\0").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == wanted and pid_alive(int(entry.name)):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def tool_sleep(stub: ModelStub) -> list[str]:
    """Make the stub ask the agent to run a uniquely recognisable `sleep`; return its argv."""
    argv = ["sleep", str(600 + os.getpid() % 1000 + int(time.time() * 1000) % 97)]
    stub.tool_command = " ".join(argv)
    stub.set_mode("tool")
    return argv


@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_cancel_kills_cli_and_tool_children(agent, agents_bin, stub, tmp_path):
    sleep_argv = tool_sleep(stub)  # the agent runs `sleep N` with its shell tool, in a session of its own
    spawned: list[int] = []
    seen: list[int] = []
    req = make_request(tmp_path, "run the command", timeout=60, on_process=spawned.append)

    def cancel_when_tool_runs() -> None:
        sleepers = wait_until(lambda: pids_running(sleep_argv), what=f"{agent} to start the tool command")
        seen.extend(group_pids(spawned[0]) + sleepers)
        req.cancel.set()

    threading.Thread(target=cancel_when_tool_runs, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin)).run(req)
    assert info.value.kind == "cancelled" and time.monotonic() - started < 40
    # the npm codex is a node wrapper around the native binary; both agents add the tool's shell + sleep
    assert len(seen) >= 2, f"processes seen: {seen}"
    assert not any(pid_alive(pid) for pid in seen) and not group_alive(spawned[0])
    assert not pids_running(sleep_argv)


# --- through a real alter0 worker ---------------------------------------------------------------------

def agent_pids(home: Path) -> list[int]:
    """Live processes whose HOME is under ``home`` (the agent CLIs of one install, and their children)."""
    marker = f"HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid_alive(int(entry.name)):
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.fixture
def real_env(make_env, agents_bin, stub, tmp_path):
    """Factory: real_env(agent, **config) -> an alter0 install whose executor is the real CLI on the stub."""

    def factory(agent: str, base_url: str | None = None, **config):
        home = tmp_path / f"agent-home-{agent}"
        executor = agent_config(agent, home, base_url or stub.url, agents_bin)
        config.setdefault("task", {}).setdefault("generation_timeout_sec", 60)
        env = make_env(executor=executor, **config)
        env.agent_home = home / agent
        env.start_worker()
        return env

    return factory


@pytest.mark.parametrize("agent", AGENTS)
def test_worker_two_messages_resume_one_session(agent, real_env, stub):
    env = real_env(agent)
    first = env.send("first prompt: what is 2+2?")
    assert first["status"] == "done", first
    assert "tail='first prompt: what is 2+2?'" in first["response"]
    second = env.send("second prompt, a bit longer", "--task", str(first["task_id"]))
    assert second["status"] == "done" and second["task_id"] == first["task_id"], second
    assert "user_turns=2" in second["response"]
    turn2 = stub.model_requests()[-1]
    assert any("first prompt: what is 2+2?" in t for t in turn2["user_texts"])
    task = json.loads(env.cli("task", "show", str(first["task_id"]), "--json").stdout)
    assert task["executor"] == agent and task["session_id"]
    session_files = [p.name for p in env.agent_home.rglob("*.jsonl")]
    assert any(task["session_id"] in name for name in session_files), (task["session_id"], session_files)
    # usage per job, summed per task, visible in `alter0 task show`
    jobs = [env.job(first["job_id"]), env.job(second["job_id"])]
    for job in jobs:
        assert job["usage"]["input_tokens"] > 0 and job["usage"]["output_tokens"] > 0
        assert (job["usage"]["cost_usd"] > 0) == (agent == "claude")
    for key in ("input_tokens", "output_tokens"):
        assert task["usage"][key] == sum(j["usage"][key] for j in jobs)
    assert task["usage"]["cost_usd"] == pytest.approx(sum(j["usage"]["cost_usd"] for j in jobs), abs=1e-6)
    shown = env.cli("task", "show", str(first["task_id"])).stdout
    assert f"session: {task['session_id']}" in shown
    assert f"{task['usage']['input_tokens']} in / {task['usage']['output_tokens']} out tokens" in shown


@pytest.mark.parametrize("agent", AGENTS)
def test_worker_auth_failure_fails_at_once(agent, real_env, stub):
    env = real_env(agent, retry={"generate": {"attempts": 3, "delay_sec": 0.1}})
    stub.set_mode("401")
    started = time.monotonic()
    result = env.send("hello there", check=False)
    job = env.wait_job(result["job_id"], timeout=60)
    assert job["status"] == "failed" and job["error"]["kind"] == "auth", job
    assert job["attempts"]["generate"] == 1 and len(stub.model_requests()) == 1  # no retry
    assert "401" in job["error"]["message"] or "invalid api key" in job["error"]["message"].lower()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("agent", AGENTS)
def test_worker_overload_retried_then_ok(agent, real_env, stub):
    env = real_env(agent, retry={"generate": {"attempts": 3, "delay_sec": 0.2}})
    stub.set_mode(OVERLOAD[agent], times=2)
    result = env.send("hello there")
    job = env.wait_job(result["job_id"], timeout=90)
    assert job["status"] == "done" and "FAKE-REPLY" in job["response"], job
    assert job["attempts"]["generate"] == 3
    assert [r["status"] for r in stub.model_requests()] == [int(OVERLOAD[agent])] * 2 + [200]


@pytest.mark.parametrize("agent, server", [("codex", "hang"), ("claude", "hang"), ("codex", "unreachable"),
                                           ("codex", "tool"), ("claude", "tool")])
def test_worker_hanging_or_unreachable_server_times_out(agent, server, real_env, stub):
    env = real_env(agent, base_url="http://127.0.0.1:9" if server == "unreachable" else None,
                   task={"generation_timeout_sec": 6})
    sleep_argv = tool_sleep(stub) if server == "tool" else None  # the agent's own command outlives the limit
    stub.set_mode("tool" if sleep_argv else "hang")
    result = env.send("hello there", "--async")
    seen = wait_until(lambda: agent_pids(env.agent_home), what=f"{agent} to start")
    if sleep_argv:
        seen += wait_until(lambda: pids_running(sleep_argv), what="the tool command")
    job = env.wait_job(result["job_id"], timeout=90)
    assert job["status"] == "timed_out" and job["error"]["kind"] == "timeout", job
    assert "6 s" in job["error"]["message"]
    assert job["attempts"]["generate"] == 1  # a timeout is not retried by default
    assert not any(pid_alive(pid) for pid in seen) and not agent_pids(env.agent_home)
    assert not (sleep_argv and pids_running(sleep_argv))


def test_worker_claude_unreachable_server_is_retried_then_fails(real_env):
    # claude (unlike codex) gives up on a refused connection by itself: a transient error, retried
    env = real_env("claude", base_url="http://127.0.0.1:9", retry={"generate": {"attempts": 2, "delay_sec": 0.1}})
    result = env.send("hello there", check=False)
    job = env.wait_job(result["job_id"], timeout=90)
    assert job["status"] == "failed" and job["error"]["kind"] == "transient", job
    assert job["attempts"]["generate"] == 2 and "connect" in job["error"]["message"].lower()


@pytest.mark.parametrize("agent", AGENTS)
def test_worker_cancel_kills_the_cli_and_its_children(agent, real_env, stub):
    env = real_env(agent)
    sleep_argv = tool_sleep(stub)
    result = env.send("run the command", "--async")
    sleepers = wait_until(lambda: pids_running(sleep_argv), what=f"{agent} to start the tool command")
    seen = agent_pids(env.agent_home) + sleepers
    env.cli("job", "cancel", str(result["job_id"]))
    job = env.wait_job(result["job_id"], timeout=30)
    assert job["status"] == "cancelled", job
    wait_until(lambda: not agent_pids(env.agent_home) and not pids_running(sleep_argv), timeout=10,
               what="the agent processes to end")
    assert not any(pid_alive(pid) for pid in seen)


# --- honest sessions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("agent", AGENTS)
def test_adapter_failed_attempts_are_rolled_back_from_the_session(agent, agents_bin, stub, tmp_path):
    # Given a session with one good turn
    ex = build_executor(agent, settings_for(agent, tmp_path, stub.url, agents_bin))
    first = timed_run(agent, ex, make_request(tmp_path, "first prompt: what is 2+2?"))
    # When the next message fails twice (overload, then a bad key), each attempt rolled back as the stage does
    for mode in (OVERLOAD[agent], "401"):
        stub.set_mode(mode, times=1)
        mark = ex.checkpoint(first.session_id)
        assert mark, f"{agent}: no session file found for {first.session_id}"
        with pytest.raises(ExecutorError):
            ex.run(make_request(tmp_path, "the retried message", first.session_id))
        ex.rollback(mark)
    # Then the successful attempt sends the model that message once, after the one good turn
    second = timed_run(agent, ex, make_request(tmp_path, "the retried message", first.session_id))
    assert second.session_id == first.session_id and "FAKE-REPLY" in second.text
    texts = stub.model_requests()[-1]["user_texts"]
    assert sum("the retried message" in t for t in texts) == 1, texts
    assert any("first prompt: what is 2+2?" in t for t in texts)


@pytest.mark.parametrize("agent", AGENTS)
def test_worker_retries_and_failures_leave_each_message_once_in_the_session(agent, real_env, stub):
    env = real_env(agent, retry={"generate": {"attempts": 3, "delay_sec": 0.2}})
    first = env.send("first prompt: what is 2+2?")
    task = str(first["task_id"])
    stub.set_mode(OVERLOAD[agent], times=2)  # two failed attempts, then the third answers
    second = env.send("the overloaded message", "--task", task)
    assert second["status"] == "done" and "FAKE-REPLY" in second["response"], second
    stub.set_mode("401")  # a job that fails for good
    refused = env.send("a refused message", "--task", task, check=False)
    assert refused["status"] == "failed", refused
    stub.set_mode("ok")
    third = env.send("third message", "--task", task)
    assert third["status"] == "done", third
    texts = stub.model_requests()[-1]["user_texts"]
    assert sum("the overloaded message" in t for t in texts) == 1, texts
    assert not any("a refused message" in t for t in texts), texts
    assert sum("first prompt: what is 2+2?" in t for t in texts) == 1
