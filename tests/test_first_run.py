"""A new user's first run: `scripts/run` in a clean clone with no venv, timed to /health.

It must print its steps with the elapsed time and the console's address, keep gunicorn's access log and the
INFO lines off the terminal (in output/logs/), start the console while the local model installs in the
background (`alter0 status` says so), and stop everything on Ctrl-C. The clone is of the committed HEAD.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from support.helpers import ROOT, free_port, skip_or_fail, wait_until

#: The issue's target on an idle machine is 180 s; this shared test machine gets room for load.
LIMIT_SEC = 600


@pytest.mark.timeout(LIMIT_SEC + 300)
def test_scripts_run_from_a_clean_clone_reaches_health_with_visible_steps(tmp_path):
    if not shutil.which("git") or not (ROOT / ".git").exists():
        skip_or_fail("git and a git checkout are needed to clone the project")
    clone = tmp_path / "alter0"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALTER0_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PORT=str(port), PATH="/usr/local/bin:/usr/bin:/bin")
    started = time.monotonic()
    proc = subprocess.Popen(["scripts/run"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[tuple[float, str]] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
            if "alter0 console:" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(LIMIT_SEC)
        text = "\n".join(line for _, line in lines)
        assert ready.is_set(), f"no console address within {LIMIT_SEC} s:\n{text[-3000:]}"
        to_ready = next(t for t, line in lines if "alter0 console:" in line)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
        print(f"\nscripts/run from a clean clone to /health: {to_ready:.1f} s\n{text}")
        steps = [line for _, line in lines if re.match(r"alter0 \[\d+:\d\d\] ", line)]
        for expected in ("creating the virtual environment", "installing alter0", "local model: installing in "
                         "the background", "starting the web front end", "ready"):
            assert any(expected in s for s in steps), f"missing step {expected!r}:\n{text}"
        assert f"==> alter0 console: http://127.0.0.1:{port}/" in text
        status = subprocess.run([str(clone / ".venv" / "bin" / "alter0"), "status"], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=60)
        if (clone / ".venv" / "alter0-local-model.installing").exists():
            assert "local model (SmolLM2) is still installing" in status.stdout, status
        else:
            assert "executor: local" in status.stdout, status
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read()
        time.sleep(1.0)
        text = "\n".join(line for _, line in lines)
        assert '"GET /health' not in text and " INFO " not in text, text[-3000:]  # quiet terminal
        access = clone / "output" / "logs" / "web-access.log"
        assert '"GET /health HTTP/1.1" 200' in access.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        reader.join(5)
    # Ctrl-C stopped everything: once scripts/run has returned, nothing runs from the clone's venv
    venv = str(clone / ".venv")
    try:
        wait_until(lambda: not _running_from(venv), 30, lambda: f"processes left running: {_running_from(venv)}")
    finally:
        for pid in _running_from(venv):
            os.kill(pid, signal.SIGKILL)
    assert not (clone / ".venv" / "alter0-local-model.installing").exists()


def _running_from(path: str) -> list[int]:
    """Live processes whose command line names ``path`` (a venv's python, honcho, gunicorn, alter0)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and path.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                pids.append(int(entry))
        except OSError:
            continue
    return pids
