"""Outgoing webhook latency and outage recovery, with a no-op executor, against a real HTTP receiver.

    .venv/bin/python bench/notify.py [--jobs 20] [--outage 30] [--backlog 10] [--max-delay 10]

A fresh install (Huey + SQLite, synchronous=full, lexical router, a no-op command executor), a real `alter0
worker` (whose notifier thread holds the lease) and tests/support/webhook_receiver.py on loopback, which checks
every signature. Latency: one job at a time, from the job's finished_at (the close stage's commit) to the
receiver getting its job.done POST. Outage: the receiver's port is closed (connection refused) for --outage
seconds while --backlog jobs finish; recovery = from the port reopening to the last of them received.
Prints a table and writes bench/results/<date>-notify.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.helpers import wait_until  # noqa: E402
from support.install import Alter0Env  # noqa: E402
from support.webhook_receiver import Receiver  # noqa: E402

SECRET = "bench-secret-123"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--backlog", type=int, default=10)
    ap.add_argument("--max-delay", type=float, default=10.0, help="channels.delivery.max_delay_sec (default 10)")
    args = ap.parse_args()
    receiver = Receiver(SECRET)
    with tempfile.TemporaryDirectory(prefix="notifybench-") as tmp:
        env = Alter0Env(Path(tmp), router={"backend": "lexical"},
                        executor={"name": "command", "command": ["sh", "-c", "cat >/dev/null; echo ok"]},
                        runtime={"db": {"synchronous": "full"}},
                        notify={"webhooks": [{"url": receiver.url, "secret": SECRET, "events": ["job.done"]}]},
                        channels={"delivery": {"max_delay_sec": args.max_delay}})
        try:
            env.start_worker()

            def one(i: int) -> float:
                job = env.send(f"ping {i}")
                got = wait_until(lambda: next((g for g in receiver.deliveries("job.done")
                                               if g["body"]["job"]["id"] == job["job_id"]), None), 30, "the webhook")
                return got["at"] - got["body"]["job"]["finished_at"]

            one(-1)  # warm-up, not recorded
            latencies = [one(i) for i in range(args.jobs)]
            receiver.down()
            down_at = time.time()
            backlog_jobs = [env.send(f"during the outage {i}")["job_id"] for i in range(args.backlog)]
            time.sleep(max(0.0, down_at + args.outage - time.time()))
            receiver.up()
            back_at = time.time()
            want = args.jobs + 1 + args.backlog
            wait_until(lambda: len(receiver.deliveries("job.done")) >= want, args.outage + 120, "the backlog")
            time.sleep(2)
            got = receiver.deliveries("job.done")
            recovered = max(g["at"] for g in got if g["body"]["job"]["id"] in backlog_jobs) - back_at
            per_job = Counter(g["body"]["job"]["id"] for g in got)
            dupes = sum(n - 1 for n in per_job.values())
            order_ok = [g["body"]["job"]["id"] for g in got if g["body"]["job"]["id"] in backlog_jobs] == backlog_jobs
            bad_sigs = sum(1 for g in got if not g["signature_ok"])
            refused = args.outage  # the port was closed this long
        finally:
            env.stop_all()
            receiver.close()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[max(0, int(round(0.95 * len(ms))) - 1)]
    lines = [
        f"# bench/notify.py — {time.strftime('%Y-%m-%d %H:%M')}", "",
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the end; Huey + SQLite "
        f"(synchronous=full), lexical router, a no-op command executor, webhook receiver on loopback; alter0 "
        f"{subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}.",
        "", "| measure | p50 | p95 | max | n |", "|---|---:|---:|---:|---:|",
        f"| job done (finished_at) → webhook received (ms) | {statistics.median(ms):.1f} | {p95:.1f} | "
        f"{ms[-1]:.1f} | {len(ms)} |", "",
        f"Outage: the receiver's port was closed (connection refused) for {refused:.0f} s while {args.backlog} jobs "
        f"finished; every one was received {recovered:.1f} s after the port reopened "
        f"(channels.delivery.max_delay_sec = {args.max_delay:g}), in order: {order_ok}; exactly-once: {want} jobs, "
        f"{len(per_job)} received, {want - len(per_job)} missing, {dupes} twice; bad signatures: {bad_sigs}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-notify.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
