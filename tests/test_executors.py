"""Executor adapters against fake CLIs (tests/fixtures/fake_codex, fake_claude) and a local HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alter0.executors import (EXECUTOR_NAMES, ExecutorError, available_executors, build_executor,
                              resolve_name)
from alter0.executors import claude as claude_mod
from alter0.executors import codex as codex_mod
from alter0.executors.openai import parse_sse
from alter0.executors.process import group_alive, run_process
from support.helpers import FIXTURES, ROOT, default_settings as settings, exec_request as request, pid_alive, skip_or_fail

TRANSCRIPTS = FIXTURES / "transcripts"


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A bin dir with codex/claude symlinked to the fakes, first on PATH; returns (bin, log, state)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").symlink_to(FIXTURES / "fake_codex")
    (bin_dir / "claude").symlink_to(FIXTURES / "fake_claude")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log, state = tmp_path / "calls.jsonl", tmp_path / "state"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.setenv("FAKE_AGENT_STATE_DIR", str(state))
    return bin_dir, log, state


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


# --- transcripts -------------------------------------------------------------------------------------------

def test_codex_transcript_ok():
    turn = codex_mod.parse_transcript((TRANSCRIPTS / "codex_exec_ok.jsonl").read_text())
    assert turn.thread_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert turn.completed and turn.failure is None
    assert turn.messages[-1].startswith("There is a README.md")
    assert codex_mod.usage_of(turn) == {"input_tokens": 24763, "output_tokens": 122, "cached_input_tokens": 24448}


def test_codex_transcript_resumed_ignores_unknown_items():
    turn = codex_mod.parse_transcript((TRANSCRIPTS / "codex_exec_resumed.jsonl").read_text())
    assert turn.messages == ["Continuing: the summary now also lists the tests folder."]
    assert turn.completed


def test_codex_transcript_failed_and_real():
    failed = codex_mod.parse_transcript((TRANSCRIPTS / "codex_exec_failed.jsonl").read_text())
    assert "401" in failed.failure and failed.warnings
    real = codex_mod.parse_transcript((TRANSCRIPTS / "real" / "codex_real_turn1.jsonl").read_text())
    assert real.usage["reasoning_output_tokens"] == 0 and real.messages[0].startswith("FAKE-REPLY")
    refused = codex_mod.parse_transcript((TRANSCRIPTS / "real" / "codex_real_refused.jsonl").read_text())
    assert not refused.completed and refused.failure is None and len(refused.warnings) == 4


def test_codex_progress_events():
    item = {"type": "item.completed", "item": {"id": "i", "type": "command_execution", "command": "ls -la"}}
    assert codex_mod.progress_event(item) == ("executor.item", {"phase": "completed", "type": "command_execution",
                                                                "id": "i", "text": "ls -la"})
    assert codex_mod.progress_event({"type": "error", "message": "retrying"})[0] == "executor.warning"
    assert codex_mod.progress_event({"type": "turn.started"}) is None


@pytest.mark.parametrize("name, kind", [
    ("claude_result_api_error.json", "rate_limited"),
    ("claude_result_max_turns.json", "exit_error"),
    ("real/claude_real_401_retries0.json", "auth"),
    ("real/claude_real_missing_key.json", "auth"),
    ("real/claude_real_refused_retries0.json", "transient"),
])
def test_claude_error_results(name, kind):
    result = claude_mod.find_result((TRANSCRIPTS / name).read_text())
    assert result["is_error"]
    err = claude_mod.error_of(result)
    assert err.kind == kind
    assert err.retryable == (kind in ("rate_limited", "transient"))


def test_claude_results_ok():
    ok = claude_mod.find_result((TRANSCRIPTS / "claude_result_ok.json").read_text())
    assert ok["result"] == "Hello CLI Test"
    assert claude_mod.usage_of(ok) == {"input_tokens": 3, "output_tokens": 6, "cached_input_tokens": 15635,
                                       "cost_usd": 0.0079825}
    stream = claude_mod.find_result((TRANSCRIPTS / "real" / "claude_real_stream_json.jsonl").read_text())
    assert stream["session_id"] == "e6201602-8c7d-4021-9572-d1652742ca0e"


def test_openai_sse_transcript():
    lines = (TRANSCRIPTS / "openai_chat_stream_ok.txt").read_text().splitlines()
    assert parse_sse(lines) == ("Hello", {"input_tokens": 5, "output_tokens": 2})


# --- codex through the fake ------------------------------------------------------------------------------

def test_codex_two_turns_resume(fake_bin, tmp_path):
    _, log, _ = fake_bin
    ex = build_executor("codex", settings(executor__model="gpt-x"))
    events = []
    first = ex.run(request(tmp_path, on_event=lambda k, d: events.append((k, d))))
    assert first.text.startswith("There is a README.md") and first.session_id
    assert first.usage == {"input_tokens": 24763, "output_tokens": 122, "cached_input_tokens": 24448}
    assert [d["type"] for k, d in events if d.get("phase") == "completed"] == [
        "command_execution", "reasoning", "file_change", "agent_message"]
    second = ex.run(request(tmp_path, session_id=first.session_id))
    assert second.session_id == first.session_id and second.text.startswith("Continuing")
    one, two = calls(log)
    assert one["argv"][:2] == ["exec", "--json"] and one["argv"][-1] == "-" and "resume" not in one["argv"]
    assert ["-m", "gpt-x"] == one["argv"][one["argv"].index("-m"):one["argv"].index("-m") + 2]
    assert two["argv"][-3:] == ["resume", first.session_id, "-"]
    assert two["argv"][:-3] == one["argv"][:-1]  # the same options again, before `resume`
    assert one["stdin"] == "list the repo root"
    assert ["--sandbox", "read-only"] == one["argv"][one["argv"].index("--sandbox"):][:2]


def test_codex_unknown_events_ignored(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_MODE", "unknown_events")
    result = build_executor("codex", settings()).run(request(tmp_path))
    assert result.text.startswith("There is a README.md")


@pytest.mark.parametrize("mode, exit_code, kind, retryable", [
    ("auth", None, "auth", False),
    ("rate_limited", None, "rate_limited", True),
    ("failed", None, "exit_error", False),
    ("failed", "0", "exit_error", False),  # turn.failed then exit 0: the events decide
    ("crash", None, "exit_error", False),
    ("no_message", None, "bad_output", False),
])
def test_codex_errors(fake_bin, tmp_path, monkeypatch, mode, exit_code, kind, retryable):
    monkeypatch.setenv("FAKE_AGENT_MODE", mode)
    if exit_code is not None:
        monkeypatch.setenv("FAKE_AGENT_EXIT", exit_code)
    with pytest.raises(ExecutorError) as info:
        build_executor("codex", settings()).run(request(tmp_path))
    assert (info.value.kind, info.value.retryable) == (kind, retryable)
    if mode == "auth":
        assert "401 Unauthorized" in info.value.message
    if mode == "crash":
        assert "unexpected argument" in info.value.message


def test_codex_rate_limited_then_ok(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_MODE", "rate_limited_then_ok")
    ex = build_executor("codex", settings())
    with pytest.raises(ExecutorError, match="429"):
        ex.run(request(tmp_path))
    assert ex.run(request(tmp_path)).text


def test_codex_refused_forever_times_out(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_MODE", "refused")
    warnings = []
    with pytest.raises(ExecutorError) as info:
        build_executor("codex", settings()).run(
            request(tmp_path, timeout=1.0, on_event=lambda k, d: warnings.append(k)))
    assert info.value.kind == "timeout" and not info.value.retryable
    assert "executor.warning" in warnings


# --- claude through the fake -----------------------------------------------------------------------------

def test_claude_two_turns_resume(fake_bin, tmp_path):
    _, log, _ = fake_bin
    ex = build_executor("claude", settings(executor__claude__max_turns=3))
    events = []
    first = ex.run(request(tmp_path, on_event=lambda k, d: events.append(d["type"])))
    assert first.text == "The root holds README.md."
    assert first.usage == {"input_tokens": 900, "output_tokens": 40, "cost_usd": 0.02}
    assert events == ["tool_use", "text"]
    second = ex.run(request(tmp_path, session_id=first.session_id))
    assert second.session_id == first.session_id
    one, two = calls(log)
    assert "--resume" not in " ".join(one["argv"]) and f"--resume={first.session_id}" in two["argv"]
    assert one["argv"][:5] == ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode"]
    assert ["--max-turns", "3"] == one["argv"][one["argv"].index("--max-turns"):][:2]
    assert "bypassPermissions" not in one["argv"] and "--dangerously-skip-permissions" not in one["argv"]


@pytest.mark.parametrize("mode, kind", [("auth", "auth"), ("rate_limited", "rate_limited"),
                                        ("max_turns", "exit_error"), ("refused", "transient"),
                                        ("crash", "exit_error")])
def test_claude_errors(fake_bin, tmp_path, monkeypatch, mode, kind):
    monkeypatch.setenv("FAKE_AGENT_MODE", mode)
    with pytest.raises(ExecutorError) as info:
        build_executor("claude", settings()).run(request(tmp_path))
    assert info.value.kind == kind


def test_claude_unknown_events_ignored(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_MODE", "unknown_events")
    assert build_executor("claude", settings()).run(request(tmp_path)).text == "The root holds README.md."


# --- process group, timeout, cancel, not found ---------------------------------------------------------

@pytest.mark.parametrize("ignore_term", ["0", "1"])
def test_timeout_kills_the_process_group(fake_bin, tmp_path, monkeypatch, ignore_term):
    _, _, state = fake_bin
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    monkeypatch.setenv("FAKE_AGENT_IGNORE_TERM", ignore_term)
    spawned = []
    started = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        build_executor("codex", settings()).run(request(tmp_path, timeout=1.5, on_process=spawned.append))
    assert info.value.kind == "timeout" and "1.5 s" in info.value.message
    assert time.monotonic() - started < 8
    child = int((state / "child.pid").read_text())
    assert not pid_alive(child) and not pid_alive(spawned[0]) and not group_alive(spawned[0])


def test_cancel_kills_the_process_group(fake_bin, tmp_path, monkeypatch):
    _, _, state = fake_bin
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    req = request(tmp_path, timeout=30)
    threading.Timer(1.0, req.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        build_executor("claude", settings()).run(req)
    assert info.value.kind == "cancelled" and time.monotonic() - started < 5
    assert not pid_alive(int((state / "child.pid").read_text()))


def test_lingering_children_are_killed_after_normal_exit(tmp_path):
    script = "import subprocess; p = subprocess.Popen(['sleep', '1000']); print(p.pid)"
    result = run_process([sys.executable, "-c", script], timeout=10, cancel=threading.Event())
    assert result.returncode == 0 and not pid_alive(int(result.stdout))


def test_children_in_their_own_session_are_killed(tmp_path):
    # like claude's Bash tool: the child calls setsid(), so killing the group alone would orphan it
    script = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '1000'], start_new_session=True); "
              "print(p.pid, flush=True); time.sleep(1000)")
    pids: list[int] = []
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    with pytest.raises(ExecutorError, match="cancelled"):
        run_process([sys.executable, "-c", script], timeout=30, cancel=cancel,
                    on_stdout_line=lambda line: pids.append(int(line)))
    assert pids and not pid_alive(pids[0])
    # after a normal exit too (the leader lives long enough for a scan to see its child)
    script = ("import subprocess, time; p = subprocess.Popen(['sleep', '1000'], start_new_session=True); "
              "print(p.pid); time.sleep(0.6)")
    result = run_process([sys.executable, "-c", script], timeout=10, cancel=threading.Event())
    assert not pid_alive(int(result.stdout))


def test_a_killed_worker_takes_its_running_agents_with_it(tmp_path):
    # a process that runs an agent (and the agent's child in the same group) is SIGKILLed: the guard kills the
    # group at once, with no database, supervisor or other worker involved
    pids = tmp_path / "pids"
    agent = tmp_path / "agent.py"
    agent.write_text("import subprocess, sys, time\n"
                     "p = subprocess.Popen(['sleep', '1000'])\n"
                     f"open({str(pids)!r}, 'w').write(f'{{p.pid}}\\n')\n"
                     "time.sleep(1000)\n")
    script = tmp_path / "worker.py"
    script.write_text("import sys, threading, time\n"
                      "from alter0.executors.process import run_process\n"
                      f"threading.Thread(target=run_process, args=([sys.executable, {str(agent)!r}],),\n"
                      "                 kwargs=dict(timeout=600, cancel=threading.Event()), daemon=True).start()\n"
                      "time.sleep(1000)\n")
    worker = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 20
        while not (pids.exists() and pids.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pids.read_text())
        assert pid_alive(child)
    finally:
        worker.kill()
        worker.wait()
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the agent's child outlived the killed worker"


def test_a_worker_killed_between_an_agents_spawn_and_its_guard_line_takes_the_agent_too(tmp_path):
    # Given a worker that dies right after it spawned its first agent, before it told the guard the agent's group
    # (ALTER0_FAULT_KILL=agent_spawned), and an agent that ignores its empty stdin and starts a child of its own
    pids = tmp_path / "pids"
    agent = tmp_path / "agent.py"
    agent.write_text("import os, subprocess, sys, time\n"
                     "sys.stdin.read()\n"
                     "p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
                     f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}\\n')\n"
                     "time.sleep(1000)\n")
    script = tmp_path / "worker.py"
    script.write_text("import sys, threading\n"
                      "from alter0.executors.process import run_process\n"
                      f"run_process([sys.executable, {str(agent)!r}], stdin_text='hello', timeout=600,\n"
                      "            cancel=threading.Event())\n")
    worker = subprocess.run([sys.executable, str(script)], timeout=30,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "ALTER0_FAULT_KILL": "agent_spawned"})
    assert worker.returncode == -signal.SIGKILL
    # (the kill point comes after the spawn succeeded, so the agent was started)
    # Then neither the agent nor its child (in a session of its own) outlives the worker: both carry its mark
    time.sleep(1.0)  # an orphan would have started its child by now

    def survivors():
        mine = {int(p) for p in pids.read_text().split()} if pids.exists() else set()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(agent).encode() in (entry / "cmdline").read_bytes():
                    mine.add(int(entry.name))
            except OSError:
                pass
        return [p for p in mine if pid_alive(p)]
    deadline = time.monotonic() + 5
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = survivors()
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "the agent outlived the worker that spawned it"


def _kill_guard(guard) -> int:
    """SIGKILL the guard (as by hand) and wait until it is gone; its pid."""
    pid = guard.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


def test_a_dead_guard_is_replaced_and_told_the_running_groups(tmp_path):
    from alter0.executors.guard import Guard
    guard = Guard()
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        guard.watch(sleeper.pid)
        first = _kill_guard(guard)
        other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        guard.watch(other.pid)  # a new guard, which also knows the first group
        assert guard.pid != first
        guard._proc.stdin.close()  # as when the worker dies: end of file
        for proc in (sleeper, other):
            proc.wait(timeout=5)
        assert sleeper.returncode == -signal.SIGKILL and other.returncode == -signal.SIGKILL
    finally:
        for proc in (sleeper, locals().get("other")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_replaced_guard_is_told_a_group_once_and_forgets_it_at_its_unwatch(tmp_path):
    # Given a guard killed by hand, and a group watched after it died (the write finds its pipe without a reader)
    from alter0.executors.guard import Guard
    guard = Guard()
    kept = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    ended = None
    try:
        guard.watch(kept.pid)
        first = _kill_guard(guard)
        ended = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        guard.watch(ended.pid)
        assert guard.pid != first
        # When that group is unwatched (its run is over) and the worker then dies (end of file)
        guard.unwatch(ended.pid)
        guard._proc.stdin.close()
        kept.wait(timeout=5)
        # Then the guard kills the group still listed and leaves the unwatched one alone
        assert kept.returncode == -signal.SIGKILL
        time.sleep(0.5)
        assert ended.poll() is None, "an unwatched group was killed: the new guard had been told it twice"
    finally:
        for proc in (kept, ended):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_binary_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExecutorError) as info:
        build_executor("codex", settings()).run(request(tmp_path))
    assert info.value.kind == "not_found"
    assert "executor binary 'codex' not found on PATH; install it or set executor.name" in info.value.message
    with pytest.raises(ExecutorError, match="not_found|not found"):
        run_process(["/nonexistent/agent"], timeout=5, cancel=threading.Event())


def test_stderr_tail_is_bounded(tmp_path):
    script = "import sys; sys.stderr.write('x' * 100000 + 'END')"
    result = run_process([sys.executable, "-c", script], timeout=10, cancel=threading.Event())
    assert result.stderr_tail.endswith("END") and len(result.stderr_tail) <= 4096


def test_a_run_starts_no_thread_and_serves_a_prompt_bigger_than_the_pipe():
    # Given a 1.1 MB prompt (the pipe holds 64 KiB) echoed line by line, with stderr written along the way
    prompt = "".join(f"line {i} {'x' * 100}\n" for i in range(10_000))
    script = ("import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stderr.write('e' * 50)\n"
              "sys.stderr.write('END')")
    run_process(["true"], timeout=10, cancel=threading.Event())  # the dead-worker guard starts with the first run
    threads, lines = threading.active_count(), []
    result = run_process([sys.executable, "-c", script], stdin_text=prompt, timeout=60, cancel=threading.Event(),
                         on_stdout_line=lambda line: lines.append(threading.active_count()))
    # Then every byte came back, line by line, stderr's tail is kept, and no thread ran beside the caller's
    assert result.returncode == 0 and result.stdout == prompt and len(lines) == 10_000
    assert result.stderr_tail.endswith("END") and len(result.stderr_tail) <= 4096
    assert set(lines) == {threads} and threading.active_count() == threads


def test_streamed_chunks_keep_characters_split_across_writes_and_exit_is_seen_without_a_pidfd(monkeypatch):
    # Given a kernel without pidfds (the exit is polled) and output whose UTF-8 characters are split across writes
    from alter0.executors import process
    monkeypatch.setattr(process, "_pidfd_open", None)
    script = ("import os, sys, time\nb = '任务完成 ok'.encode()\nfor i in range(len(b)):\n"
              "    os.write(1, b[i:i + 1]); time.sleep(0.002)\nos.close(1)\ntime.sleep(0.3)\nsys.exit(3)")
    chunks = []
    result = run_process([sys.executable, "-c", script], timeout=10, cancel=threading.Event(),
                         on_stdout_chunk=chunks.append)
    # Then the text arrives whole (no replacement characters), and the run ends when the process does, not when
    # it closed its stdout 0.3 s before, with its exit status
    assert "".join(chunks) == result.stdout == "任务完成 ok" and result.returncode == 3
    assert result.duration >= 0.3


# --- command and llm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code, out, kind", [(0, "hello", None), (75, "", "transient"), (3, "", "exit_error"),
                                             (0, "  ", "bad_output")])
def test_command_executor(tmp_path, code, out, kind):
    script = (f"import sys; p = sys.stdin.read(); sys.stderr.write('boom'); "
              f"print({out!r} + (p if {out!r}.strip() else '')); sys.exit({code})")
    ex = build_executor("command", settings(executor__command=[sys.executable, "-c", script]))
    if kind is None:
        assert ex.run(request(tmp_path)).text == "hellolist the repo root"
        return
    with pytest.raises(ExecutorError) as info:
        ex.run(request(tmp_path))
    assert info.value.kind == kind
    if kind == "exit_error":
        assert "boom" in info.value.message and "status 3" in info.value.message
    assert info.value.retryable == (kind == "transient")


FAKE_LLM = """#!/usr/bin/env python3
import json, os, sys
argv = sys.argv[1:]
log = os.path.join(os.environ["LLM_USER_PATH"], "log.json")
entries = json.load(open(log)) if os.path.exists(log) else []
if argv[:1] == ["logs"]:
    print(json.dumps(entries[::-1][:5]))
    sys.exit(0)
prompt = sys.stdin.read()
if "loop" in prompt:  # a small model's loop, streamed token by token
    import time
    for _ in range(100):
        for word in "The boundaries of reality are ever-changing. ".split(" "):
            sys.stdout.write(word + " ")
            sys.stdout.flush()
            time.sleep(0.01)
    sys.exit(0)
if "fail" in prompt:
    sys.stderr.write("Error: No key found - add one using 'llm keys set openai'")
    sys.exit(1)
cid = argv[argv.index("--cid") + 1] if "--cid" in argv else "conv-%d" % len(entries)
reply = "echo: " + prompt
entries.append({"prompt": prompt, "response": reply, "conversation_id": cid, "input_tokens": 4, "output_tokens": 2})
json.dump(entries, open(log, "w"))
print(reply)
"""


def test_llm_executor_keeps_conversation(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llm").write_text(FAKE_LLM)
    (bin_dir / "llm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ex = build_executor("llm", settings(executor__home=str(tmp_path / "home")))
    first = ex.run(request(tmp_path))
    assert first.text == "echo: list the repo root" and first.session_id == "conv-0"
    assert first.usage == {"input_tokens": 4, "output_tokens": 2}
    assert ex.run(request(tmp_path, session_id="conv-0")).session_id == "conv-0"
    req = request(tmp_path)
    req.prompt = "please fail"
    with pytest.raises(ExecutorError) as info:
        ex.run(req)
    assert info.value.kind == "auth" and "No key found" in info.value.message
    events: list[tuple[str, dict]] = []
    looping = request(tmp_path, prompt="write a loop", on_event=lambda kind, data: events.append((kind, data)))
    started = time.monotonic()
    result = ex.run(looping)
    assert time.monotonic() - started < 5  # stopped at the third repeat, not after 100
    assert result.text == "The boundaries of reality are ever-changing."
    assert [d["reason"] for k, d in events if k == "executor.stopped"] == ["repetition"]
    streamed = "".join(d["text"] for k, d in events if k == "executor.delta")
    assert streamed.count("ever-changing") >= 3  # the tokens reached the job as they came
    assert result.usage["estimated"] and result.usage["output_tokens"] > 0 and result.usage["input_tokens"] > 0


# --- environment and home ---------------------------------------------------------------------------

def test_default_env_keeps_the_users_home(fake_bin, tmp_path, monkeypatch):
    _, log, _ = fake_bin
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv("CODEX_HOME", raising=False)
    build_executor("codex", settings()).run(request(tmp_path))
    assert calls(log)[0]["env"]["HOME"] == "/home/someone" and calls(log)[0]["env"]["CODEX_HOME"] is None


def test_isolated_home_and_extra_env(fake_bin, tmp_path):
    _, log, _ = fake_bin
    cfg = settings(executor__home=str(tmp_path / "ah"), executor__env={"CLAUDE_CONFIG_DIR": "/custom"},
                   executor__extra_args=["--add-dir", "/x"])
    build_executor("codex", cfg).run(request(tmp_path))
    build_executor("claude", cfg).run(request(tmp_path))
    codex_call, claude_call = calls(log)
    assert codex_call["env"]["HOME"] == codex_call["env"]["CODEX_HOME"] == str(tmp_path / "ah" / "codex")
    assert (tmp_path / "ah" / "codex").is_dir()
    assert claude_call["env"]["HOME"] == str(tmp_path / "ah" / "claude")
    assert claude_call["env"]["CLAUDE_CONFIG_DIR"] == "/custom"  # executor.env wins
    assert claude_call["argv"][-2:] == ["--add-dir", "/x"]
    assert codex_call["argv"][-3:-1] == ["--add-dir", "/x"]


def test_isolate_home_defaults_under_output_dir(tmp_path):
    ex = build_executor("claude", settings(executor__isolate_home=True, runtime__output_dir=str(tmp_path / "out")))
    env = ex.build_env()
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "out" / "agent-home" / "claude")


# --- registry --------------------------------------------------------------------------------------

def test_registry_auto_and_available(fake_bin, tmp_path, monkeypatch):
    assert set(EXECUTOR_NAMES) == {"codex", "claude", "llm", "local", "command", "openai"}
    assert resolve_name(settings()) == "codex"
    (fake_bin[0] / "codex").unlink()
    assert resolve_name(settings()) == "claude"
    assert build_executor("auto", settings()).name == "claude"
    assert build_executor("claude", settings()) is build_executor("claude", settings())
    status = available_executors(settings())
    assert status["claude"][0] and not status["codex"][0]
    assert status["command"] == (False, "executor.command is not set")
    monkeypatch.setenv("PATH", str(tmp_path))
    install = tmp_path / "venv-bin"  # the install's own bin dir (where sys.executable is) is looked in too
    install.mkdir()
    (install / "llm").write_text("#!/bin/sh\n")
    (install / "llm").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(install / "python"))
    assert resolve_name(settings()) == "llm"
    assert build_executor("llm", settings()).build_env()["PATH"].endswith(str(install))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ExecutorError) as info:
        resolve_name(settings())
    assert info.value.kind == "not_found" and "codex, claude, local, llm" in info.value.message
    assert resolve_name(settings(executor__name="openai")) == "openai"


# --- openai against a local server ------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.mode == "hang":
            time.sleep(5)
            return
        if self.mode == "ok":
            payload = (TRANSCRIPTS / "openai_chat_stream_ok.txt").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        else:
            payload = (TRANSCRIPTS / "openai_chat_error.json").read_bytes()
            self.send_response(int(self.mode))
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    _Handler.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _openai(server, mode, monkeypatch, **kw):
    _Handler.mode = mode
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test")
    return build_executor("openai", settings(
        executor__openai__base_url=f"http://127.0.0.1:{server.server_address[1]}",
        executor__openai__api_key_env="TEST_OPENAI_KEY", executor__model="m", **kw))


def test_openai_stream_ok(chat_server, tmp_path, monkeypatch):
    result = _openai(chat_server, "ok", monkeypatch).run(request(tmp_path))
    assert (result.text, result.usage) == ("Hello", {"input_tokens": 5, "output_tokens": 2})
    seen = _Handler.seen[0]
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer sk-test"
    assert seen["body"]["stream"] is True and seen["body"]["messages"][-1]["content"] == "list the repo root"


@pytest.mark.parametrize("status, kind", [("404", "exit_error"), ("401", "auth"), ("403", "auth"),
                                          ("429", "rate_limited"), ("503", "transient")])
def test_openai_http_errors(chat_server, tmp_path, monkeypatch, status, kind):
    with pytest.raises(ExecutorError) as info:
        _openai(chat_server, status, monkeypatch).run(request(tmp_path))
    assert info.value.kind == kind and "model 'llama9' not found" in info.value.message


def test_openai_refused_timeout_cancel(chat_server, tmp_path, monkeypatch):
    ex = build_executor("openai", settings(executor__openai__base_url="http://127.0.0.1:9"))
    with pytest.raises(ExecutorError) as info:
        ex.run(request(tmp_path))
    assert info.value.kind == "transient"
    with pytest.raises(ExecutorError) as info:
        _openai(chat_server, "hang", monkeypatch).run(request(tmp_path, timeout=0.5))
    assert info.value.kind == "timeout"
    req = request(tmp_path, timeout=30)
    threading.Timer(0.3, req.cancel.set).start()
    with pytest.raises(ExecutorError) as info:
        _openai(chat_server, "hang", monkeypatch).run(req)
    assert info.value.kind == "cancelled"


def test_auto_resolves_in_the_install_bin_whatever_the_path(make_env):
    """The README runs `.venv/bin/alter0` without activating the venv: status, doctor and /task new must
    still find the venv's local model (as the worker does), not report the executor unavailable."""
    env = make_env(executor={"name": "auto"}, router={"backend": "lexical"})
    if not build_executor("local", settings()).available()[0]:
        skip_or_fail("the local model is not installed in this venv (scripts/setup --local-model)")
    env.env["PATH"] = "/usr/bin:/bin"  # no venv bin, no fake agents: the CLI is run by absolute path
    assert not any(shutil.which(a, path=env.env["PATH"]) for a in ("codex", "claude", "llm"))
    assert "executor: local" in env.cli("status").stdout
    assert env.cli("doctor", "--skip", "router").returncode == 0
    created = env.cli("send", "/task new fibonacci")
    assert "task #1 created" in created.stdout, created
    task = json.loads(env.cli("task", "show", "1", "--json").stdout)
    assert task["executor"] == "local"


def test_base_url_and_api_key_reach_every_executor(tmp_path):
    cfg = settings(executor__base_url="http://127.0.0.1:8000/v1/", executor__api_key="sk-local")
    codex = build_executor("codex", cfg)
    argv = codex.argv(request(tmp_path))
    overrides = dict(a.split("=", 1) for a in argv[argv.index("-c"):] if "=" in a)
    assert overrides["model_provider"] == '"alter0"'
    assert overrides["model_providers.alter0.base_url"] == '"http://127.0.0.1:8000/v1"'
    assert overrides["model_providers.alter0.wire_api"] == '"responses"'
    assert overrides["model_providers.alter0.env_key"] == '"ALTER0_EXECUTOR_API_KEY"'
    assert "sk-local" not in " ".join(argv) and codex.build_env()["ALTER0_EXECUTOR_API_KEY"] == "sk-local"
    claude_env = build_executor("claude", cfg).build_env()
    assert claude_env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8000" and claude_env["ANTHROPIC_API_KEY"] == "sk-local"
    llm_env = build_executor("llm", cfg).build_env()
    assert llm_env["OPENAI_BASE_URL"] == "http://127.0.0.1:8000/v1" and llm_env["OPENAI_API_KEY"] == "sk-local"
    openai = build_executor("openai", cfg)
    assert openai.base_url() == "http://127.0.0.1:8000" and openai.api_key() == "sk-local"
    alias = build_executor("openai", settings(executor__openai__base_url="http://127.0.0.1:11434/v1"))
    assert alias.base_url() == "http://127.0.0.1:11434"  # the older name still works
    plain = settings()
    assert "-c" not in build_executor("codex", plain).argv(request(tmp_path))
    assert "ANTHROPIC_BASE_URL" not in build_executor("claude", plain).server_env()
    # executor.env still wins over what base_url sets
    over = settings(executor__base_url="http://h:1", executor__env={"ANTHROPIC_BASE_URL": "http://other:2"})
    assert build_executor("claude", over).build_env()["ANTHROPIC_BASE_URL"] == "http://other:2"


def test_api_key_is_secret():
    from alter0.config import SETTINGS_BY_KEY
    assert SETTINGS_BY_KEY["executor.api_key"].secret
