"""Engines are built from the Config they are given: two installs in one directory never share a queue,
importing one engine creates nothing of the other, and periodic maintenance runs on every engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from support.helpers import BIN, FAKE_AGENT, merge
from support.install import Alter0Env
from scale_support import fresh_backend_config

DAY = 86400


def _install(folder: Path, name: str) -> Path:
    """Write install ``name``'s config (its own output dir) into the shared folder; returns its path."""
    config = {"runtime": {"output_dir": str(folder / f"out-{name}"), "db": {"synchronous": "normal"},
                          "queue": {"workers": 2, "reclaim_interval_sec": 0.5}},
              "executor": {"name": "command", "command": [sys.executable, str(FAKE_AGENT)]}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for key in ("ALTER0_CONFIG", "ALTER0_OUTPUT_DIR"):
        env.pop(key, None)
    return env


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "alter0"), *args], cwd=folder, env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"alter0 {' '.join(args)}: {result.stderr}"
    return result


def _job(folder: Path, config: Path, job_id: int) -> dict:
    return json.loads(_cli(folder, "--config", str(config), "job", "show", str(job_id), "--json").stdout)


def _wait(folder: Path, config: Path, job_id: int, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        job = _job(folder, config, job_id)
        if job["status"] in ("done", "failed", "cancelled", "timed_out") or time.time() > deadline:
            return job
        time.sleep(0.2)


def _worker(folder: Path, config: Path) -> subprocess.Popen:
    log = open(folder / f"{config.stem}-worker.log", "ab")
    return subprocess.Popen([str(BIN / "alter0"), "--config", str(config), "worker"], cwd=folder, env=_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_two_installs_in_one_directory_keep_their_own_database_and_queue(tmp_path):
    # Given two installs whose configs live side by side, used from the same directory with --config only
    a, b = _install(tmp_path, "a"), _install(tmp_path, "b")
    job_a = int(_cli(tmp_path, "--config", str(a), "send", "--async", "[[reply:from a]] hello a").stdout)
    job_b = int(_cli(tmp_path, "--config", str(b), "send", "--async", "[[reply:from b]] hello b").stdout)
    # Then each job row and each queue message went to its own output dir, nothing to ./output
    for name in ("a", "b"):
        assert (tmp_path / f"out-{name}" / "queue" / "huey.db").is_file()
        assert (tmp_path / f"out-{name}" / "db").is_dir()
    assert not (tmp_path / "output").exists()
    # When only install a's worker runs
    worker_a = _worker(tmp_path, a)
    try:
        assert _wait(tmp_path, a, job_a)["response"] == "from a"
        time.sleep(1.5)  # a's worker had every chance to take b's message if it could see it
        assert _job(tmp_path, b, job_b)["status"] == "queued"
        # Then b's job waits for b's own worker, and is answered once it starts
        worker_b = _worker(tmp_path, b)
        try:
            assert _wait(tmp_path, b, job_b)["response"] == "from b"
        finally:
            _stop(worker_b)
    finally:
        _stop(worker_a)


def test_importing_an_engine_creates_nothing_of_the_other(tmp_path):
    config = _install(tmp_path, "c")
    code = ("import tasks, tasks.dramatiq_engine.app, tasks.dramatiq_engine.queue, tasks.dramatiq_engine.consumer, "
            "alter0.queue, alter0.runtime, alter0.cli, web; import sys; "
            "print(sorted(m for m in sys.modules if m == 'huey' or m.startswith('huey.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(_env(), ALTER0_CONFIG=str(config)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # the huey library was not even imported
    assert not (tmp_path / "out-c").exists() and not (tmp_path / "output").exists()


def test_huey_consumer_entry_point_builds_from_the_environment(tmp_path):
    config = _install(tmp_path, "d")
    code = "import tasks; h = tasks.huey; print(h.storage.filename); print(sorted(h._registry._registry))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(_env(), ALTER0_CONFIG=str(config)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    filename, registered = result.stdout.splitlines()
    assert filename == str(tmp_path / "out-d" / "queue" / "huey.db")
    assert all(f"alter0.{stage}" in registered for stage in ("route", "generate", "close"))


def test_retention_runs_under_dramatiq(tmp_path, scale_services):
    # Given a Dramatiq + Redis + PostgreSQL install with a long-closed task's memory and an old stage log folder
    env = Alter0Env(tmp_path / "install", **merge(fresh_backend_config(), {
        "runtime": {"maintenance": {"task_memory_retention_days": 1, "log_retention_days": 1}}}))
    env.db()
    from alter0.models import MaintenanceState, Task, TaskMemory
    task = Task.create(title="old", scope="user:u", user_id="u", status="closed", closed_at=time.time() - 3 * DAY)
    TaskMemory.create(task=task.id, turns=[], participants=["u"], summary="old memory", turn_count=1)
    old_logs = env.output / "orchestrator" / time.strftime("%Y-%m-%d", time.gmtime(time.time() - 5 * DAY))
    old_logs.mkdir(parents=True)
    (old_logs / "executor_route.jsonl").write_text("{}\n")
    # When a Dramatiq worker runs
    env.start_worker()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and MaintenanceState.select().count() < 2:
            time.sleep(0.3)
        # Then its supervisor ran both retention jobs: the memory is gone, the old folder too
        assert {r.name: r.last_error for r in MaintenanceState.select()} == {
            "memory_retention": None, "log_retention": None}
        assert TaskMemory.get_or_none(TaskMemory.task == task.id) is None
        assert not old_logs.exists()
    finally:
        env.stop_all()
