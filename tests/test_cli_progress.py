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

from support.helpers import BIN, REGRESSION
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


BAR = re.compile(r"\r\x1b\[K(?P<label>[a-z ]+) \[(?P<bar>[#.]{24})\] (?P<done>\d+)/(?P<total>\d+) ")


def bars(out: str, label: str) -> list[re.Match]:
    """The progress-bar frames of ``label`` the command drew, in order."""
    return [m for m in BAR.finditer(out) if m["label"] == label]


def assert_bar_ran(out: str, label: str) -> None:
    frames = bars(out, label)
    assert frames, f"no {label} bar in {out!r}"
    last = frames[-1]
    assert last["done"] == last["total"] and last["bar"] == "#" * 24, out  # it reached the end
    assert out.rstrip().endswith(("\r\x1b[K", "\n")) or "\r\x1b[K" in out.split(last.group(0))[-1], out  # cleared


def test_long_commands_draw_progress_bars_on_a_terminal_only(make_env, tmp_path):
    """backup, verify (live and archive), restore, workspace prune and bench routing: a bar on a terminal that
    reaches done/total and is cleared before the result; nothing of it on a pipe or with --json."""
    env = make_env(executor={"name": "command", "command": ["true"]})
    env.db()  # the database and its schema
    code, out = run_on_pty(env, "backup")
    assert code == 0, out
    assert_bar_ran(out, "backup")
    archive = out.replace("\r\x1b[K", "\n").strip().splitlines()[-1].strip()
    assert archive.endswith(".tar.gz") and os.path.isfile(archive), out  # the result line itself stays clean

    code, out = run_on_pty(env, "verify")
    assert code == 0 and "ok   database integrity_check" in out, out
    assert_bar_ran(out, "verify")
    assert bars(out, "verify")[-1]["total"] == "3"  # integrity, foreign keys, schema (no queue store yet)
    code, out = run_on_pty(env, "verify", "--archive", archive)
    assert code == 0 and "ok   archive members and checksums" in out, out
    assert_bar_ran(out, "verify")

    code, out = run_on_pty(env, "restore", archive)
    assert code == 0 and "restored " in out, out
    assert_bar_ran(out, "restore")
    assert [f["done"] for f in bars(out, "restore")][-1] == "6"

    for name in ("left-1", "left-2"):  # leftovers of interrupted creations: empty folders no task owns
        (env.output / "worktrees" / name).mkdir(parents=True)
    code, out = run_on_pty(env, "workspace", "prune")
    assert code == 0 and out.count("removed ") == 2, out
    assert_bar_ran(out, "workspace prune")
    assert bars(out, "workspace prune")[-1]["total"] == "2"

    preds = tmp_path / "preds.jsonl"
    code, out = run_on_pty(env, "bench", "routing", "--input", str(REGRESSION / "chat_sample.jsonl"), "--output",
                           str(preds), "--backend", "lexical", "--engine", "inline", timeout=120)
    assert code == 0, out
    assert_bar_ran(out, "bench routing")
    assert bars(out, "bench routing")[-1]["total"] == str(2 * len(preds.read_text().splitlines()))
    assert "routed 500/" not in out  # the bar replaces the periodic lines on a terminal

    for args in (("backup",), ("verify",), ("verify", "--json"), ("restore", archive, "--json"),
                 ("workspace", "prune"), ("workspace", "prune", "--json")):
        result = env.cli(*args)  # a pipe: no bar, no escape codes
        assert "\x1b" not in result.stdout + result.stderr and "[####" not in result.stderr, (args, result.stderr)
    for args in (("verify", "--json"), ("restore", archive, "--json"), ("workspace", "prune", "--json")):
        code, out = run_on_pty(env, *args)  # --json on a terminal: no bar either
        assert code == 0 and "\x1b[K" not in out and "[####" not in out, (args, out)
