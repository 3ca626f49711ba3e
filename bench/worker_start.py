"""Worker start-to-ready: how long after ``alter0 worker`` is exec'd a waiting job is taken and answered.

    .venv/bin/python bench/worker_start.py [--runs 5] [--router embedded]

Each run: a fresh-ish install (one per bench, soak-like config: command executor, embedded router), one job
submitted while no worker runs (``alter0 send --async``), then ``alter0 worker`` is started and the clock runs
until the worker's row says running (supervisor up), the job leaves ``queued`` (a consumer thread took its
route stage: ready) and the job is done (the router model was needed). The worker is then SIGKILLed, as the
soak does. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--router", default="embedded", choices=("embedded", "lexical"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alter0-worker-start-"))
    config = tmp / "config.json"
    config.write_text(json.dumps({
        "runtime": {"output_dir": str(tmp / "output"), "queue": {"workers": 4}},
        "executor": {"name": "command", "command": ["sh", "-c", "cat >/dev/null; echo ok"]},
        "router": {"backend": args.router}}))
    env = dict(os.environ, ALTER0_CONFIG=str(config), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    db = tmp / "output" / "db" / "alter0.db"
    rows = []
    for run in range(args.runs):
        sent = subprocess.run([str(BIN / "alter0"), "send", "--async", "--json", f"bench message {run}"],
                              env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        job_id = json.loads(sent.stdout)["job_id"]
        t0 = time.monotonic()
        proc = subprocess.Popen([str(BIN / "alter0"), "worker"], env=env, cwd=ROOT, start_new_session=True,
                                stdout=open(tmp / "worker.log", "ab"), stderr=subprocess.STDOUT)
        marks: dict[str, float] = {}
        while "done" not in marks and time.monotonic() - t0 < 120:
            conn = sqlite3.connect(db, timeout=10)
            try:
                running = conn.execute("SELECT 1 FROM worker WHERE pid = ? AND state = 'running'",
                                       (proc.pid,)).fetchone()
                status = conn.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()[0]
            finally:
                conn.close()
            t = time.monotonic() - t0
            if running:
                marks.setdefault("supervisor", t)
            if status != "queued":
                marks.setdefault("taken", t)
            if status in ("done", "failed"):
                marks.setdefault("done", t)
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rows.append(marks)
        print(f"run {run}: supervisor up {marks.get('supervisor', -1):.2f} s, job taken {marks.get('taken', -1):.2f} s, "
              f"job done {marks.get('done', -1):.2f} s", flush=True)
    for key in ("supervisor", "taken", "done"):
        vals = [r[key] for r in rows if key in r]
        print(f"median {key}: {statistics.median(vals):.2f} s (max {max(vals):.2f} s)")
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
