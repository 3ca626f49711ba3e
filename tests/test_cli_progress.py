"""Live progress in the CLI: `alter0 send` on a terminal (a real pty), --quiet, --json and a pipe unchanged,
`alter0 job show --follow` tailing a running job, and `job show --events` as a readable text timeline."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time

from support.helpers import BIN
from support.install import agent_bin


def run_on_pty(env, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the real `alter0` with stdin/stdout/stderr on a pseudo-terminal; (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / "alter0"), *args], env={**env.env, "COLUMNS": "120"}, cwd=env.tmp,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", "replace")


def slow_codex_env(make_env, delay: str = "1.5"):
    env = make_env(executor={"name": "codex"})
    agent_bin(env, "codex", mode="slow")
    env.env["FAKE_AGENT_DELAY"] = delay
    env.start_worker()
    return env


def test_send_on_a_terminal_shows_stage_routing_and_executor_progress(make_env):
    env = slow_codex_env(make_env)
    code, out = run_on_pty(env, "send", "list the repository root")
    assert code == 0, out
    assert "\r\x1b[K" in out and re.search(r"[|/\\-] generate +\d+\.\ds", out), out  # the status line, redrawn
    assert re.search(r"route: routed to new task #1 \(\w+", out), out  # the routing decision as it happened
    assert "generate: command_execution completed: bash -lc ls" in out, out  # the executor's progress events
    lines = out.replace("\r\x1b[K", "\n").splitlines()
    reply_at = next(i for i, line in enumerate(lines) if "[job 1 · task #1 · new" in line)
    assert any("routed to new task" in line for line in lines[:reply_at])  # progress came before the reply

    quiet_code, quiet = run_on_pty(env, "send", "--quiet", "and now the tests folder")
    assert quiet_code == 0 and "routed to" not in quiet and "\x1b[K" not in quiet, quiet
    piped = env.cli("send", "and the docs folder too")  # not a terminal: the answer only, as before
    assert "routed to" not in piped.stderr and "\x1b" not in piped.stderr + piped.stdout
    as_json = env.cli("send", "--json", "one more")
    assert json.loads(as_json.stdout)["status"] == "done" and "\x1b" not in as_json.stderr


def test_job_show_follow_tails_a_running_job(make_env):
    env = slow_codex_env(make_env, delay="2")
    job_id = env.cli("send", "--async", "take your time").stdout.strip()
    started = time.monotonic()
    followed = env.cli("job", "show", job_id, "--follow")
    assert time.monotonic() - started >= 1.0  # it waited for the running job
    out = followed.stdout
    assert "status: done" in out
    timeline = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3}  ", line)]
    texts = " | ".join(timeline)
    for expected in ("submitted", "queued -> routing", "routed to new task #1", "generating -> closing",
                     "command_execution completed: bash -lc ls", "closing -> done"):
        assert expected in texts, texts
    assert re.search(r"close +task (closed|stays open) \(", texts), texts  # the closer's decision and its reason
    assert json.loads(env.cli("job", "show", job_id, "--follow", "--json").stdout)["status"] == "done"


def test_job_show_events_text_timeline_and_error_line(make_env):
    env = make_env(executor={"name": "codex"}, retry={"generate": {"attempts": 1}})
    agent_bin(env, "codex", mode="auth")
    env.start_worker()
    job_id = env.cli("send", "--async", "hello").stdout.strip()
    env.wait_job(job_id)
    shown = env.cli("job", "show", job_id, "--events").stdout
    error_line = next(line for line in shown.splitlines() if line.startswith("error: "))
    assert re.match(r"error: auth: .+", error_line) and "{" not in error_line, shown
    assert "events:" in shown and re.search(r"\d\d:\d\d:\d\d\.\d{3}  generate  error auth: ", shown), shown
    plain = env.cli("job", "show", job_id).stdout
    assert "events:" not in plain and "error: auth: " in plain
