"""Shared fixtures: a temp alter0 install (config + output dir) with real worker processes and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FAKE_AGENT = FIXTURES / "fake_agent.py"
BIN = Path(sys.executable).parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip locally; in CI a missing prerequisite is a failure, never a silent skip."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


class Alter0Env:
    """One alter0 install in a temp dir: config file, output dir, env, processes it started."""

    def __init__(self, tmp: Path, **config):
        self.tmp = tmp
        self.output = tmp / "output"
        self.config_path = tmp / "config.json"
        self.agent_log = tmp / "agent.jsonl"
        self.procs: list[subprocess.Popen] = []
        (tmp / "state").mkdir(parents=True, exist_ok=True)
        base = {
            "runtime": {"output_dir": str(self.output), "db": {"synchronous": "normal"},
                        "queue": {"workers": 4, "retry_delay_sec": 0.1, "lease_sec": 6, "reclaim_interval_sec": 0.5},
                        "shutdown": {"drain_timeout_sec": 10}},
            "executor": {"name": "command", "command": [sys.executable, str(FAKE_AGENT)]},
            "security": {"admin_user_ids": ["admin"]},
        }
        self.config = _merge(base, config)
        self.write_config()
        self.env = dict(os.environ, ALTER0_CONFIG=str(self.config_path), FAKE_AGENT_LOG=str(self.agent_log),
                        FAKE_AGENT_STATE=str(tmp / "state"), PYTHONUNBUFFERED="1",
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.env.pop("ALTER0_OUTPUT_DIR", None)

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=2))

    # --- processes ---------------------------------------------------------------------------------
    def start_worker(self, *extra: str, name: str = "worker") -> subprocess.Popen:
        """Start `alter0 worker` and wait until its heartbeat is in the database."""
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "ab")
        proc = subprocess.Popen([str(BIN / "alter0"), "worker", *extra], env=self.env, cwd=self.tmp,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}: {self.logs()}")
            status = self.cli("status", "--json", check=False)
            if status.returncode == 0 and any(w["pid"] == proc.pid for w in json.loads(status.stdout)["workers"]):
                return proc
            time.sleep(0.1)
        raise AssertionError(f"worker did not start: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("*.log")))

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the process (the worker's own group too when SIGKILL: as a crash would)."""
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # --- CLI ---------------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        result = subprocess.run([str(BIN / "alter0"), *args], env=self.env, cwd=self.tmp, capture_output=True,
                                text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"alter0 {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\n"
                                 f"stderr: {result.stderr}\nlogs: {self.logs()}")
        return result

    def send(self, text: str, *args: str, check: bool = True) -> dict:
        """`alter0 send TEXT --json` → the printed object."""
        result = self.cli("send", text, "--json", *args, check=check)
        return json.loads(result.stdout)

    def job(self, job_id, *args: str) -> dict:
        return json.loads(self.cli("job", "show", str(job_id), "--json", *args).stdout)

    def wait_job(self, job_id, timeout: float = 60, until=("done", "failed", "cancelled", "timed_out")) -> dict:
        deadline = time.time() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in until or time.time() > deadline:
                return job
            time.sleep(0.1)

    def agent_runs(self) -> list[dict]:
        if not self.agent_log.exists():
            return []
        return [json.loads(line) for line in self.agent_log.read_text().splitlines() if line.strip()]

    def db(self):
        """Open the install's database in this process (read models directly)."""
        from alter0.config import load_config
        from alter0.migrations import open_current
        return open_current(load_config(self.config_path, env={}))


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_env(tmp_path):
    """Factory: make_env(**config_overrides) -> Alter0Env; its processes are stopped after the test."""
    envs: list[Alter0Env] = []

    def factory(**config) -> Alter0Env:
        env = Alter0Env(tmp_path / f"install{len(envs)}", **config)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.stop_all()


@pytest.fixture
def a0(make_env) -> Alter0Env:
    """A default install (fake command executor) with no processes started."""
    return make_env()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


ENGINES = ["huey", "dramatiq"]


@pytest.fixture(params=ENGINES)
def engine_env(request, make_env):
    """Factory like make_env, once per queue engine: Huey+SQLite, then Dramatiq+Redis+PostgreSQL."""
    if request.param == "huey":
        return make_env
    try:
        from scale_support import fresh_backend_config
    except ImportError:
        skip_or_fail("the Dramatiq+Redis+PostgreSQL test support (tests/scale_support.py) is missing")
    request.getfixturevalue("scale_services")

    def factory(**config):
        return make_env(**_merge(fresh_backend_config(), config))

    return factory


from scale_support import scale_services  # noqa: E402,F401  (session fixture: Redis + PostgreSQL for dramatiq)
