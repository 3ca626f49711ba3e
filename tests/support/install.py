"""One alter0 install in a temp dir for the tests: config file, output dir, environment, its processes, its CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .helpers import BIN, FAKE_AGENT, FINISHED, FIXTURES, merge, wait_status


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
        self.config = merge(base, config)
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
        return self.await_worker(self.spawn([str(BIN / "alter0"), "worker", *extra], f"{name}-{len(self.procs)}"))

    def spawn(self, argv: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        """Start ``argv`` in its own session in the install's dir, its output in ``<name>.log``; stopped at the end."""
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env or self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def await_worker(self, proc: subprocess.Popen, timeout: float = 20) -> subprocess.Popen:
        """Wait until ``proc`` (a worker of this install) is listed by ``alter0 status``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker {proc.args} exited with {proc.returncode}: {self.logs()}")
            status = self.cli("status", "--json", check=False)
            if status.returncode == 0 and any(w["pid"] == proc.pid for w in json.loads(status.stdout)["workers"]):
                return proc
            time.sleep(0.1)
        raise AssertionError(f"worker {proc.args} did not start: {self.logs()}")

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

    def wait_job(self, job_id, timeout: float = 60, until=FINISHED) -> dict:
        """Poll ``alter0 job show`` until the job's status is in ``until`` or ``timeout`` passes; the last view."""
        return wait_status(lambda: self.job(job_id), until, timeout)

    def reach(self, job_id, statuses: tuple[str, ...], timeout: float = 20) -> dict:
        """Like ``wait_job`` with a 50 ms poll, but a timeout is an AssertionError naming the job and the logs."""
        job = wait_status(lambda: self.job(job_id), statuses, timeout, interval=0.05)
        assert job["status"] in statuses, f"job {job_id} never reached {statuses}: {job}\n{self.logs()}"
        return job

    def agent_runs(self) -> list[dict]:
        if not self.agent_log.exists():
            return []
        return [json.loads(line) for line in self.agent_log.read_text().splitlines() if line.strip()]

    def db(self):
        """Open the install's database in this process (read models directly)."""
        from alter0.config import load_config
        from alter0.migrations import open_current
        return open_current(load_config(self.config_path, env={}))


def agent_bin(env: "Alter0Env", name: str, mode: str = "ok") -> Path:
    """Put the fake ``codex`` or ``claude`` (tests/fixtures/fake_NAME) first on the install's PATH in ``mode``;
    returns the JSONL file its calls are logged to."""
    bindir = env.tmp / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / name
    if not link.exists():
        link.symlink_to(FIXTURES / f"fake_{name}")
    env.env["PATH"] = f"{bindir}{os.pathsep}{env.env['PATH']}"
    env.env["FAKE_AGENT_MODE"] = mode
    env.env["FAKE_AGENT_LOG"] = str(env.tmp / f"{name}-calls.jsonl")
    return env.tmp / f"{name}-calls.jsonl"
