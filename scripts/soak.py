#!/usr/bin/env python3
"""Soak with fault injection: web + worker(s) on a temp output dir, a fake executor with random latency and
failures, messages at a steady rate, SIGKILLs of a worker or the web at random intervals (each is restarted
after a random delay, as a supervisor such as systemd would), then checks: every accepted message has exactly
one reply or a recorded failure, no job is left unfinished, no duplicate job or reply, integrity_check ok.
Writes a Markdown report (with the command line and the load average); exit 0 = pass.

Usage: scripts/soak.py [--duration 120] [--rate 2] [--kill-min 8] [--kill-max 25] [--workers 2]
                       [--restart-min 0.2] [--restart-max 2] [--out DIR] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL = ("done", "failed", "cancelled", "timed_out")
AGENT = r'''#!/usr/bin/env python3
"""Soak executor: prompt on stdin, reply on stdout after a random delay; sometimes fails."""
import os, random, sys, time
sys.stdin.read()
lo, hi = float(os.environ["SOAK_LAT_MIN"]), float(os.environ["SOAK_LAT_MAX"])
time.sleep(random.uniform(lo, hi))
roll = random.random()
if roll < float(os.environ["SOAK_TRANSIENT"]):
    print("soak: transient failure", file=sys.stderr); sys.exit(75)
if roll > 1 - float(os.environ["SOAK_PERMANENT"]):
    print("soak: permanent failure", file=sys.stderr); sys.exit(3)
print("soak reply", random.randint(0, 10**9))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The web and worker processes of one soak install; restartable."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out, self.port = out, free_port()
        agent = out / "soak-agent.py"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        self.config = out / "config.json"
        self.config.write_text(json.dumps({
            "runtime": {"output_dir": str(out / "output"), "db": {"synchronous": "normal"},
                        "queue": {"workers": 4}, "shutdown": {"drain_timeout_sec": 5}},
            "executor": {"name": "command", "command": [sys.executable, str(agent)]},
            "web": {"port": self.port, "workers": 2, "threads": 8}}, indent=2))
        self.env = dict(os.environ, ALTER0_CONFIG=str(self.config), PYTHONUNBUFFERED="1",
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                        SOAK_LAT_MIN=str(args.latency_min), SOAK_LAT_MAX=str(args.latency_max),
                        SOAK_TRANSIENT=str(args.transient), SOAK_PERMANENT=str(args.permanent))
        for name in ("ALTER0_OUTPUT_DIR", "PORT", "ALTER0_API_TOKEN"):
            self.env.pop(name, None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = {"web": 0, "worker": 0}
        self.workers = [f"worker{i}" for i in range(args.workers)]

    def start(self, name: str) -> None:
        argv = ([str(BIN / "gunicorn"), "-c", "web/gunicorn.conf.py", "web:create_app()"] if name == "web"
                else [str(BIN / "alter0"), "worker"])
        log = open(self.out / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()
        self.starts["web" if name == "web" else "worker"] += 1

    def kill(self, name: str) -> None:
        """SIGKILL the process and its process group, as a crash or the OOM killer would."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def ensure(self) -> list[str]:
        """Restart processes that exited on their own; return their names."""
        died = [n for n, p in self.procs.items() if p.poll() is not None]
        for name in died:
            self.start(name)
        return died

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for name, sig in (("web", signal.SIGTERM), *((w, signal.SIGINT) for w in self.workers)):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(sig)
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(name)
                codes[name] = None
        return codes

    def post(self, n: int, timeout: float = 30.0) -> int | None:
        """Submit message ``n`` (idempotent by request_id, retried while the web is down); its job id."""
        body = json.dumps({"content": f"soak message {n}: {random.choice(TOPICS)}", "user_id": f"u{n % 5}",
                           "request_id": f"soak-{n}"}).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/jobs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return json.loads(resp.read())["job_id"]
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
        return None

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise SystemExit(f"web did not answer /health in {timeout}s; see {self.out / 'web.log'}")


TOPICS = ("fix the login bug", "write release notes", "refactor the parser", "tune the database",
          "plan the sprint", "review the API docs", "update dependencies", "debug the flaky test")


def send_loop(cluster: Cluster, rate: float, until: float, accepted: dict, refused: list) -> None:
    n, next_at = 0, time.monotonic()
    while time.monotonic() < until:
        job_id = cluster.post(n)
        (refused.append(n) if job_id is None else accepted.__setitem__(n, job_id))
        n += 1
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))


def chaos_loop(cluster: Cluster, args: argparse.Namespace, until: float, kills: list, stop: threading.Event) -> None:
    while not stop.wait(random.uniform(args.kill_min, args.kill_max)) and time.monotonic() < until:
        name = random.choice(cluster.workers) if random.random() < 0.65 else "web"
        cluster.kill(name)
        kills.append((round(time.monotonic(), 1), name))
        time.sleep(random.uniform(args.restart_min, args.restart_max))
        cluster.start(name)


def settle(db_path: Path, job_ids: list[int], cluster: Cluster, timeout: float) -> list[str]:
    """Wait until every accepted job has ended (restarting crashed processes); return unexpected exits."""
    deadline, died = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        died += cluster.ensure()
        conn = sqlite3.connect(db_path, timeout=30)
        open_ = conn.execute(f"SELECT COUNT(*) FROM job WHERE status NOT IN {TERMINAL}").fetchone()[0]
        conn.close()
        if open_ == 0:
            break
        time.sleep(0.5)
    return died


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def check(db_path: Path, accepted: dict[int, int]) -> dict:
    """Count lost, duplicate, stuck and failed jobs and duplicate replies; latency of answered jobs."""
    conn = sqlite3.connect(db_path, timeout=30)
    rows = {r[0]: r for r in conn.execute(
        "SELECT id, status, reply_message_id, error_kind, error, created_at, finished_at, request_id FROM job")}
    assistant = conn.execute("SELECT COUNT(*) FROM message WHERE role = 'assistant'").fetchone()[0]
    reply_ids = [r[2] for r in rows.values() if r[2] is not None]
    conn.close()
    ids = list(accepted.values())
    lost = [j for j in ids if j not in rows]
    stuck = [j for j in ids if j in rows and rows[j][1] not in TERMINAL]
    unanswered = [j for j in ids if j in rows and rows[j][1] == "done" and rows[j][2] is None]
    unrecorded = [j for j in ids if j in rows and rows[j][1] in ("failed", "timed_out", "cancelled")
                  and not (rows[j][3] and rows[j][4])]
    orphan_replies = max(0, assistant - len(reply_ids))  # assistant messages no job points at
    duplicates = (len(ids) - len(set(ids))) + (len(reply_ids) - len(set(reply_ids))) + orphan_replies
    latencies = [rows[j][6] - rows[j][5] for j in ids if j in rows and rows[j][1] == "done"]
    return {"accepted": len(ids), "done": sum(rows[j][1] == "done" for j in ids if j in rows),
            "failed": sum(rows[j][1] != "done" for j in ids if j in rows and rows[j][1] in TERMINAL),
            "lost": len(lost), "stuck": len(stuck), "unanswered": len(unanswered), "unrecorded": len(unrecorded),
            "duplicates": duplicates, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "max": max(latencies, default=None),
            "jobs_in_db": len(rows), "examples": {"lost": lost[:5], "stuck": stuck[:5], "unanswered": unanswered[:5]}}


def integrity(cfg_path: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from alter0.config import load_config
    from alter0.ops.verify import verify
    return [f"{c.name}: {c.detail}" for c in verify(load_config(cfg_path, env={})) if not c.ok]


def load_loop(loads: list, stop: threading.Event) -> None:
    """Sample the 1-minute load average every 10 s (the machine may be shared)."""
    while not stop.wait(10):
        loads.append(os.getloadavg()[0])


def report(args, result: dict, kills: list, died: list, refused: list, bad_integrity: list, codes: dict,
           elapsed: float, loads: list) -> tuple[str, bool]:
    ok = (result["lost"] == result["duplicates"] == result["stuck"] == result["unanswered"] ==
          result["unrecorded"] == 0 and not bad_integrity and result["accepted"] > 0)
    fmt = lambda v: "-" if v is None else f"{v:.3f} s"  # noqa: E731
    lines = [
        f"# alter0 soak report: {'PASS' if ok else 'FAIL'}", "",
        "| measure | value |", "| --- | --- |",
        f"| duration (send phase) | {args.duration:g} s (total {elapsed:.0f} s) |",
        f"| rate | {args.rate:g} msg/s |",
        f"| executor | latency {args.latency_min:g}-{args.latency_max:g} s, transient {args.transient:.0%}, "
        f"permanent {args.permanent:.0%} |",
        f"| kills (SIGKILL) | {len(kills)}: worker {sum(k[1] != 'web' for k in kills)}, "
        f"web {sum(k[1] == 'web' for k in kills)} |",
        f"| worker processes / restart delay | {args.workers} / {args.restart_min:g}-{args.restart_max:g} s |",
        f"| accepted | {result['accepted']} |",
        f"| not accepted (web down > 30 s) | {len(refused)} |",
        f"| replied | {result['done']} |", f"| recorded failures | {result['failed']} |",
        f"| lost | {result['lost']} |", f"| duplicates | {result['duplicates']} |",
        f"| stuck (non-terminal) | {result['stuck']} |",
        f"| done without reply / failure without error | {result['unanswered']} / {result['unrecorded']} |",
        f"| latency p50 / p99 / max (submit -> done) | {fmt(result['p50'])} / {fmt(result['p99'])} / "
        f"{fmt(result['max'])} |",
        f"| integrity_check + foreign keys + queue store | {'ok' if not bad_integrity else '; '.join(bad_integrity)} |",
        f"| unexpected process exits | {len(died)} {died or ''} |",
        f"| final stop exit codes | {codes} |",
        f"| 1-min load average during the send phase (mean / max, {os.cpu_count()} cores) | "
        f"{sum(loads) / max(1, len(loads)):.2f} / {max(loads, default=0):.2f} |",
        f"| load average (1/5/15 min) at the end | {' / '.join(f'{x:.2f}' for x in os.getloadavg())} |",
        "", "command: `" + " ".join(["scripts/soak.py", *sys.argv[1:]]) + "`",
    ]
    if not ok:
        lines += ["", f"examples: {result['examples']}"]
    return "\n".join(lines) + "\n", ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=120.0, help="seconds of sending and killing")
    p.add_argument("--rate", type=float, default=2.0, help="messages per second")
    p.add_argument("--kill-min", type=float, default=8.0, help="shortest gap between kills (s)")
    p.add_argument("--kill-max", type=float, default=25.0, help="longest gap between kills (s)")
    p.add_argument("--latency-min", type=float, default=0.05)
    p.add_argument("--latency-max", type=float, default=1.5)
    p.add_argument("--transient", type=float, default=0.10, help="share of executor runs failing transiently")
    p.add_argument("--permanent", type=float, default=0.03, help="share of executor runs failing for good")
    p.add_argument("--workers", type=int, default=2, help="worker processes (one unit each, as in a deployment "
                   "with two worker services); the chaos kills one at a time")
    p.add_argument("--restart-min", type=float, default=0.2, help="shortest delay before a killed process restarts")
    p.add_argument("--restart-max", type=float, default=2.0, help="longest delay before a killed process restarts")
    p.add_argument("--settle", type=float, default=180.0, help="max seconds to wait for the backlog to finish")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, help="install dir (default: a new temp dir, kept)")
    p.add_argument("--report", type=Path, help="Markdown report (default OUT/soak-report.md)")
    args = p.parse_args()
    random.seed(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="alter0-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(out, args)
    started = time.monotonic()
    for name in cluster.workers:
        cluster.start(name)
    cluster.start("web")
    cluster.wait_healthy()
    until = time.monotonic() + args.duration
    accepted: dict[int, int] = {}
    refused: list[int] = []
    kills: list = []
    stop = threading.Event()
    chaos = threading.Thread(target=chaos_loop, args=(cluster, args, until, kills, stop), daemon=True)
    chaos.start()
    loads: list[float] = []
    threading.Thread(target=load_loop, args=(loads, stop), daemon=True).start()
    try:
        send_loop(cluster, args.rate, until, accepted, refused)
    finally:
        stop.set()
        chaos.join()
    db_path = out / "output" / "db" / "alter0.db"
    died = settle(db_path, list(accepted.values()), cluster, args.settle)
    codes = cluster.stop()
    result = check(db_path, accepted)
    text, ok = report(args, result, kills, died, refused, integrity(cluster.config), codes,
                      time.monotonic() - started, loads)
    path = args.report or out / "soak-report.md"
    path.write_text(text)
    print(text)
    print(f"report: {path}\ninstall: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
