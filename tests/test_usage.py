"""Usage per job and per task from the real agents' own transcripts (tests/fixtures/transcripts/real): codex
reports its thread's running total on a resumed turn (each job gets the growth), claude reports each turn's own
use and cost; with a price configured, a turn without a reported cost is costed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from support.helpers import FIXTURES

REAL = FIXTURES / "transcripts" / "real"
PRICE = {"input": 1.25, "cached_input": 0.125, "output": 10.0}


def _agent(env, name: str, transcripts: dict[str, str]) -> None:
    """Put the fake ``name`` on PATH, replaying the given real transcripts (fixture name -> real file)."""
    folder = env.tmp / "transcripts"
    folder.mkdir(exist_ok=True)
    for fixture, real in transcripts.items():
        shutil.copy(REAL / real, folder / fixture)
    bindir = env.tmp / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).symlink_to(FIXTURES / f"fake_{name}")
    env.env.update(PATH=f"{bindir}{os.pathsep}{env.env['PATH']}", FAKE_AGENT_TRANSCRIPTS=str(folder),
                   FAKE_AGENT_MODE="ok")


def _usage(path, key: str = "usage") -> dict:
    text = (REAL / path).read_text()
    line = [json.loads(ln) for ln in text.splitlines() if '"turn.completed"' in ln or '"result"' in ln][-1]
    return line[key] if key in line else line


def _turns(env) -> tuple[dict, dict, dict]:
    first = env.send("start")
    second = env.send("continue", "--task", str(first["task_id"]))
    assert first["status"] == second["status"] == "done", (first, second)
    job = lambda j: env.job(j["job_id"])["usage"]  # noqa: E731
    return job(first), job(second), json.loads(env.cli("task", "show", str(first["task_id"]), "--json").stdout)


def test_codex_resumed_turn_counts_only_its_own_tokens_and_is_priced(make_env):
    env = make_env(executor={"name": "codex"}, usage={"prices": {"codex": PRICE}})
    _agent(env, "codex", {"codex_exec_ok.jsonl": "codex_real_turn1.jsonl",
                          "codex_exec_resumed.jsonl": "codex_real_turn2_resume.jsonl"})
    env.start_worker()
    one, two, task = _turns(env)
    total1, total2 = _usage("codex_real_turn1.jsonl"), _usage("codex_real_turn2_resume.jsonl")
    assert (one["input_tokens"], one["output_tokens"]) == (total1["input_tokens"], total1["output_tokens"])
    assert (two["input_tokens"], two["output_tokens"]) == (total2["input_tokens"] - total1["input_tokens"],
                                                           total2["output_tokens"] - total1["output_tokens"])
    # the task's sum is what the thread reported in the end: what was billed, counted once
    assert (task["usage"]["input_tokens"], task["usage"]["output_tokens"]) == (total2["input_tokens"],
                                                                               total2["output_tokens"])
    cached = total1["cached_input_tokens"]
    expected = ((total1["input_tokens"] - cached) * PRICE["input"] + cached * PRICE["cached_input"]
                + total1["output_tokens"] * PRICE["output"]) / 1e6
    assert one["cost_usd"] == pytest.approx(expected)
    assert task["usage"]["cost_usd"] == pytest.approx(one["cost_usd"] + two["cost_usd"], abs=1e-6)


def test_claude_turns_keep_their_own_usage_and_reported_cost(make_env):
    env = make_env(executor={"name": "claude"}, usage={"prices": {"claude": PRICE}})
    _agent(env, "claude", {"claude_stream_ok.jsonl": "claude_real_turn1.json"})
    env.start_worker()
    one, two, task = _turns(env)
    real = _usage("claude_real_turn1.json", key="_whole")
    for job in (one, two):  # each resumed turn reports its own use: nothing is subtracted
        assert (job["input_tokens"], job["output_tokens"]) == (real["usage"]["input_tokens"],
                                                               real["usage"]["output_tokens"])
        assert job["cost_usd"] == pytest.approx(real["total_cost_usd"])  # the agent's cost wins over a price
    assert task["usage"]["input_tokens"] == 2 * real["usage"]["input_tokens"]
    assert task["usage"]["cost_usd"] == pytest.approx(2 * real["total_cost_usd"], abs=1e-6)
