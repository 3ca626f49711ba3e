"""Throughput of the 3-stage pipeline with a no-op executor: Huey+SQLite vs Dramatiq+Redis+PostgreSQL.

    .venv/bin/python bench/scale.py [--messages 300] [--tasks 30] [--threads 4] [--dramatiq-workers 1 2]

One run on this machine: each engine gets a fresh install, its worker process(es) are started and seen
alive, then all messages are submitted at once (one user per task, explicit task ids) and the clock runs
until every job is done. Redis and PostgreSQL are started here (tests/scale_support.py) with durable
settings (fsync on), as SQLite runs with synchronous=full. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent
NOOP = ["sh", "-c", "cat >/dev/null; echo ok"]


def write_config(tmp: Path, threads: int, backend: dict | None) -> Path:
    config = {"runtime": {"output_dir": str(tmp / "output"), "queue": {"workers": threads}},
              "executor": {"name": "command", "command": NOOP}, "router": {"backend": "lexical"}}
    for key, value in (backend or {}).get("runtime", {}).items():
        config["runtime"].setdefault(key, {}).update(value)
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def start_workers(config: Path, count: int, tmp: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, ALTER0_CONFIG=str(config))
    procs = [subprocess.Popen([str(BIN / "alter0"), "worker"], env=env, cwd=tmp, start_new_session=True,
                              stdout=open(tmp / f"worker{i}.log", "ab"), stderr=subprocess.STDOUT)
             for i in range(count)]
    from alter0.models import Worker
    deadline = time.time() + 60
    while time.time() < deadline:
        alive = {w.pid for w in Worker.select().where(Worker.state == "running")}
        if all(p.pid in alive for p in procs):
            return procs
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    raise SystemExit(f"workers did not start: {(tmp / 'worker0.log').read_text()[-2000:]}")


def run_engine(name: str, messages: int, tasks: int, threads: int, workers: int, backend: dict | None) -> dict:
    from alter0 import service, taskstate
    from alter0.config import load_config
    from alter0.models import Job, Task
    from alter0.runtime import Runtime
    with tempfile.TemporaryDirectory(prefix=f"alter0-bench-{name}-") as tmpdir:
        tmp = Path(tmpdir)
        config = write_config(tmp, threads, backend)
        os.environ["ALTER0_CONFIG"] = str(config)  # huey_consumer-style entry points read the environment
        rt = Runtime(load_config(config, env={}))
        procs = start_workers(config, workers, tmp)
        try:
            task_ids = [Task.create(title=f"t{t}", scope=taskstate.scope_of(rt.cfg, f"u{t}", ""), user_id=f"u{t}",
                                    executor="command").id for t in range(tasks)]
            started = time.time()
            jobs = [service.submit(rt, f"message {k} of task {t}", f"u{t}", task_id=task_ids[t])[0].id
                    for k in range(messages // tasks) for t in range(tasks)]
            submitted = time.time()
            while Job.select().where(Job.id.in_(jobs) & Job.finished_at.is_null()).count():
                time.sleep(0.05)
            elapsed = time.time() - started
            rows = list(Job.select(Job.status, Job.created_at, Job.finished_at).where(Job.id.in_(jobs)))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
            rt.database.close()
    latencies = sorted(r.finished_at - r.created_at for r in rows)
    return {"engine": name, "workers": f"{workers}x{threads}", "messages": len(jobs),
            "done": sum(r.status == "done" for r in rows), "submit_s": submitted - started, "total_s": elapsed,
            "msgs_per_s": len(jobs) / elapsed, "p50_s": statistics.median(latencies),
            "p95_s": latencies[int(len(latencies) * 0.95) - 1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--threads", type=int, default=4, help="runtime.queue.workers of each worker process")
    p.add_argument("--dramatiq-workers", type=int, nargs="+", default=[1, 2],
                   help="worker process counts to run on Dramatiq (Huey+SQLite runs one)")
    args = p.parse_args(argv)
    from scale_support import Services, missing
    results = [run_engine("huey+sqlite", args.messages, args.tasks, args.threads, 1, None)]
    reason = missing()
    if reason:
        print(f"dramatiq skipped: {reason}", file=sys.stderr)
    else:
        services = Services(durable=True).start()
        try:
            for n in args.dramatiq_workers:
                results.append(run_engine("dramatiq+redis+postgresql", args.messages, args.tasks, args.threads, n,
                                          services.backend_config()))
        finally:
            services.stop()
    print(f"\n3-stage pipeline, no-op executor ({' '.join(NOOP)}), {os.cpu_count()} cores, one run\n")
    head = ("engine", "workers", "messages", "done", "submit_s", "total_s", "msgs_per_s", "p50_s", "p95_s")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        print("| " + " | ".join(f"{r[h]:.2f}" if isinstance(r[h], float) else str(r[h]) for h in head) + " |")


if __name__ == "__main__":
    main()
