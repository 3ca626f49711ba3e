"""The command line of bench/pipeline: set up, run every phase in order, print and write the report."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .installs import ROOT, Install, cpu_seconds


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/pipeline", description=__doc__)
    p.add_argument("--n", type=int, default=2000, help="items per side in the throughput phase (default 2000)")
    p.add_argument("--rate", type=float, default=20, help="items/s of the paced latency phase (default 20)")
    p.add_argument("--paced-sec", type=float, default=10, help="seconds of paced load per side (default 10)")
    p.add_argument("--low-rate", type=float, default=5, help="items/s of a second, unsaturated paced phase "
                   "(default 5; 0 skips it)")
    p.add_argument("--router-n", type=int, default=200, help="router decisions timed (default 200)")
    p.add_argument("--probes", type=int, default=10, help="routing probes, idle and under load (default 10)")
    p.add_argument("--long-sec", type=float, default=30, help="length of the 8 long generations (default 30)")
    p.add_argument("--post-sec", type=float, default=10, help="seconds of POST /api/jobs load (default 10)")
    p.add_argument("--fsync-n", type=int, default=200, help="items per side counted under strace (default 200)")
    p.add_argument("--floor-n", type=int, default=300, help="messages of the floor measurement (default 300)")
    p.add_argument("--floor-commits", type=int, default=7, help="durable commits per message of the floor "
                   "(default 7)")
    p.add_argument("--rss-n", type=int, default=10000, help="alter0 messages between the two RSS readings "
                   "(default 10000; the report's number)")
    p.add_argument("--label", default="", help="a word for the report's title (e.g. before, after)")
    p.add_argument("--out", help="report file (default bench/results/<date>.md)")
    p.add_argument("--keep", action="store_true", help="keep the temporary installs (their logs)")
    return p.parse_args(argv)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, load0 = time.time(), os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="alter0-pipeline-"))
    inst = Install(root / "alter0")
    raw_dir = root / "raw"
    raw_dir.mkdir()
    os.environ.update(ALTER0_CONFIG=str(inst.config_path), PIPELINE_RAW_DIR=str(raw_dir))
    for key in ("ALTER0_OUTPUT_DIR", "DATABASE_URL", "PORT"):
        os.environ.pop(key, None)
    try:
        results = run(args, inst, raw_dir)
    finally:
        inst.stop()
        if args.keep:
            say(f"installs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    from . import report
    results.update(label=f"{args.label}, " if args.label else "", started=started, elapsed=time.time() - started,
                   load=(load0, os.getloadavg()[0]), machine=report.machine())
    text = report.render(results)
    print(text)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    say(f"written to {out}")
    return 0


def run(args: argparse.Namespace, inst: Install, raw_dir: Path) -> dict:
    say("starting the alter0 worker and gunicorn on a fresh output dir")
    ready = {"worker": inst.start_worker(), "web": inst.start_web()}
    consumers = {"raw": inst.start_raw_consumer(raw_dir).pid, "alter0": inst.worker.pid}
    from alter0.config import load_config
    from alter0.runtime import Runtime, set_runtime
    rt = Runtime(load_config())
    set_runtime(rt)
    from . import extras, phases, rawchain
    raw, a0 = phases.Raw(), phases.Alter0(rt, inst.port)
    say("warming up both pipelines")
    for side in (raw, a0):
        phases.throughput(side, 4, "warm", timeout=120)
    # the paced phases enqueue alter0's items by HTTP: warm gunicorn's workers and threads first (their first
    # requests import and connect), as the consumers were warmed above; a cold web would put its start-up in p99
    for side, send in ((raw, raw.submit), (a0, a0.post)):
        phases.paced(side, send, args.rate, min(2.0, args.paced_sec), "warm-paced")

    from . import cost
    rss = {"warm_kb": cost.rss_kb(inst.worker.pid)}
    floors = []

    def measure_floor(when: str) -> None:
        say(f"floor ({when}): {args.floor_commits} durable commits + one `cat` spawn per message, "
            f"{args.floor_n} messages")
        floors.append(cost.floor(args.floor_commits, args.floor_n, rt.cfg["runtime.db.synchronous"], ["cat"],
                                 inst.env))
    fsyncs = {}
    for side in (raw, a0):
        say(f"fsyncs counted with strace: {side.name}, {args.fsync_n} items")
        with cost.FsyncCount([consumers[side.name], os.getpid()]) as counted:
            phases.throughput(side, args.fsync_n, f"fs-{side.name}")
            time.sleep(0.5)  # the last done row's commit is counted before strace lets go
        fsyncs[side.name] = {**counted.calls, "per_item": counted.total / args.fsync_n}

    half = max(1, args.n // 2)
    rounds: dict[str, list[dict]] = {"raw": [], "alter0": []}
    for i, side in enumerate((raw, a0, a0, raw)):
        if i in (0, 2):  # the floor is measured in the same minutes as the rounds: before, between, after
            measure_floor("before the rounds" if i == 0 else "between the alter0 rounds")
        say(f"throughput: {side.name}, {half} items")
        cpu, switches = cpu_seconds(consumers[side.name]), cost.context_switches(consumers[side.name])
        rounds[side.name].append(phases.throughput(side, half, f"tp{i}"))
        rounds[side.name][-1]["cpu"] = cpu_seconds(consumers[side.name]) - cpu
        rounds[side.name][-1]["switches"] = [b - a for a, b in zip(switches, cost.context_switches(consumers[side.name]))]
    measure_floor("after the rounds")
    floor = sorted(floors, key=lambda f: f["cpu_ms"])[1]  # the median of the three
    floor["samples"] = [f["cpu_ms"] for f in floors]
    throughput = {name: {"n": sum(x["n"] for x in rs), "rate": sum(x["n"] for x in rs) / sum(x["seconds"] for x in rs),
                         "rounds": [x["n"] / x["seconds"] for x in rs],
                         "cpu_ms": 1000 * sum(x["cpu"] for x in rs) / sum(x["n"] for x in rs),
                         "switches": [sum(x["switches"][k] for x in rs) / sum(x["n"] for x in rs) for k in (0, 1)]}
                  for name, rs in rounds.items()}

    paced = paced_latency(raw, a0, args.rate, args.paced_sec)
    low = paced_latency(raw, a0, args.low_rate, args.paced_sec) if args.low_rate else None

    say(f"RSS: {args.rss_n} more alter0 messages")
    cpu, batch, left, start = cpu_seconds(inst.worker.pid), 500, args.rss_n, time.time()
    while left > 0:
        phases.throughput(a0, min(batch, left), f"rss{left}")
        left -= batch
    rss.update(after_kb=cost.rss_kb(inst.worker.pid), n=args.rss_n, seconds=time.time() - start,
               cpu_ms=1000 * (cpu_seconds(inst.worker.pid) - cpu) / max(args.rss_n, 1))

    say(f"router decision latency ({args.router_n} decisions)")
    router = extras.router_latency(rt, args.router_n)
    say(f"routing while 8 long generations run ({args.probes} probes, {args.long_sec:g} s generations)")
    routing = extras.routing_under_load(rt, inst, args.probes, args.long_sec)
    inst.stop_worker()
    say(f"POST /api/jobs load for {args.post_sec:g} s")
    post = extras.post_rate(inst.port, args.post_sec)
    consumer = rawchain.consumer_settings(rt.cfg)
    return {"throughput": throughput, "paced": paced, "floor": floor, "fsyncs": fsyncs, "rss": rss, "fsync_n": args.fsync_n, "low": low, "router": router, "routing": routing, "ready": ready,
            "post": post, "long_sec": args.long_sec, "post_sec": args.post_sec,
            "synchronous": rt.cfg["runtime.db.synchronous"], "huey_fsync": rawchain.huey_settings(rt.cfg)["fsync"],
            "consumer": ", ".join(f"{k}={v}" for k, v in consumer.items() if k != "shutdown_timeout"),
            "web_workers": rt.cfg["web.workers"], "web_threads": rt.cfg["web.threads"],
            "doorbells": True}


def paced_latency(raw, a0, rate: float, seconds: float) -> dict:
    """Enqueue → done latency percentiles of both sides at ``rate`` items/s, halves raw, alter0, alter0, raw."""
    from . import extras, phases
    lat: dict[str, dict[str, list[float]]] = {"raw": {"client": [], "inside": []}, "alter0": {"client": [], "inside": []}}
    parts: dict[str, list[float]] = {}
    for i, (side, send) in enumerate(((raw, raw.submit), (a0, a0.post), (a0, a0.post), (raw, raw.submit))):
        say(f"paced: {side.name}, {rate:g}/s for {seconds / 2:g} s")
        got = phases.paced(side, send, rate, seconds / 2, f"pc{rate:g}-{i}")
        for key in ("client", "inside"):
            lat[side.name][key] += got[key]
        for key, values in got["segments"].items():
            parts.setdefault(key, []).extend(values)
    result = {name: {k: extras.percentiles(v) for k, v in d.items()} for name, d in lat.items()}
    return {**result, "rate": rate, "seconds": seconds,
            "segments": {k: extras.percentiles(v)["p50"] for k, v in parts.items() if v}}

