"""The run's results as a Markdown report: what was measured, how, on what, and against which target."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version

from .installs import ROOT

PACKAGES = ("huey", "peewee", "flask", "gunicorn", "onnxruntime")


def machine() -> dict:
    """Cores, load, versions and the source revision of this run."""
    versions = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "-"
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout + ""
        versions["wrk"] = out.split()[1] if len(out.split()) > 1 else "?"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        rev = (rev + (" (+ uncommitted changes)" if dirty else "")) if rev else "? (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    return {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "kernel": platform.release(), "versions": versions, "revision": rev}


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}" if x < 10 else f"{x * 1000:.0f}"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(r: dict) -> str:
    """The Markdown report of one run (``r`` as built by pipeline_lib.run)."""
    m, tp, pc = r["machine"], r["throughput"], r["paced"]
    v = m["versions"]
    raw_tp, a0_tp = tp["raw"]["rate"], tp["alter0"]["rate"]
    rl, al = pc["raw"]["client"], pc["alter0"]["client"]
    tp_ratio, p50_ratio, p99_ratio = a0_tp / raw_tp, al["p50"] / rl["p50"], al["p99"] / rl["p99"]
    fl, fs, rss = r["floor"], r["fsyncs"], r["rss"]
    floor_ratio = tp["alter0"]["cpu_ms"] / max(fl["cpu_ms"], 0.01)
    growth = rss["after_kb"] / rss["warm_kb"] - 1
    lines = [
        f"# bench/pipeline — {r['label']}{time.strftime('%Y-%m-%d %H:%M', time.localtime(r['started']))}",
        "",
        f"{m['cores']} cores ({m['cpu']}, Linux {m['kernel']}); load average {r['load'][0]:.2f} at the start, "
        f"{r['load'][1]:.2f} at the end; whole run {r['elapsed']:.0f} s. Python {v['python']}, SQLite {v['sqlite']}, "
        f"Huey {v['huey']}, Peewee {v['peewee']}, Flask {v['flask']}, gunicorn {v['gunicorn']}, "
        f"onnxruntime {v['onnxruntime']}" + (f", wrk {v['wrk']}" if "wrk" in v else "") + f"; alter0 {m['revision']}.",
        "",
        f"Both sides: SQLite WAL (`runtime.db.synchronous = {r['synchronous']}`: alter0.db, and SqliteHuey "
        f"`fsync={r['huey_fsync']}` on each huey.db; alter0 flushes its durable commits of alter0.db, not the claims, "
        "heartbeats and queue-file commits it leaves unflushed: see the fsync row), consumer "
        f"`{r['consumer']}`; each consumer "
        "in its own process" + ("; alter0's also wakes when a stage is queued on the host (doorbells, "
                                "tasks/huey_engine/doorbell.py), the raw one only polls" if r.get("doorbells") else "")
        + ". Raw: per item Huey task A enqueues B enqueues C (no-op bodies, priorities as "
        "route/generate/close); C inserts the item's done row into a SQLite table (same durability). alter0: "
        "route → generate (`command` executor `cat`) → close on a fresh output dir, embedded router and closer "
        "(defaults), one user per item (so the router has no candidates; see the router rows below).",
        "",
        "| measure | raw Huey chain | alter0 | alter0 / raw | target | |",
        "|---|---:|---:|---:|---|---|",
        f"| throughput, {tp['alter0']['n']} items submitted back to back (items/s) | {raw_tp:.1f} | {a0_tp:.1f} "
        f"| {tp_ratio:.2f} | ≥ 0.35 | {_mark(tp_ratio >= 0.35)} |",
        f"| CPU per item of the consumer process, executor runs included (ms) | {tp['raw']['cpu_ms']:.1f} "
        f"| {tp['alter0']['cpu_ms']:.1f} | {tp['alter0']['cpu_ms'] / max(tp['raw']['cpu_ms'], 0.01):.1f} | ≤ 8 ms "
        f"| {_mark(tp['alter0']['cpu_ms'] <= 8)} |",
        f"| context switches per item of the consumer process's threads, voluntary / involuntary (same rounds) "
        f"| {tp['raw']['switches'][0]:.1f} / {tp['raw']['switches'][1]:.1f} "
        f"| {tp['alter0']['switches'][0]:.1f} / {tp['alter0']['switches'][1]:.1f} | | | |",
        f"| floor: {fl['commits']} durable commits + one `{' '.join(fl['command'])}` spawn per message, CPU (ms) "
        f"| | {fl['cpu_ms']:.2f} | alter0 / floor {floor_ratio:.1f} | ≤ 3 | {_mark(floor_ratio <= 3)} |",
        f"| fsync + fdatasync calls per item, consumer and submitting process (strace, {r['fsync_n']} items) "
        f"| {fs['raw']['per_item']:.1f} | {fs['alter0']['per_item']:.1f} "
        f"| {fs['alter0']['per_item'] / max(fs['raw']['per_item'], 0.01):.2f} | | |",
        f"| latency p50 at {pc['rate']:g} items/s for {pc['seconds']:g} s, enqueue → done (ms) | {_ms(rl['p50'])} "
        f"| {_ms(al['p50'])} | {p50_ratio:.2f} | ≤ 1.5 | {_mark(p50_ratio <= 1.5)} |",
        f"| latency p99, same run (ms) | {_ms(rl['p99'])} | {_ms(al['p99'])} | {p99_ratio:.2f} | ≤ 2 "
        f"| {_mark(p99_ratio <= 2)} |",
        f"| latency p50 / p99 from the system's own enqueue stamp (ms) | {_ms(pc['raw']['inside']['p50'])} / "
        f"{_ms(pc['raw']['inside']['p99'])} | {_ms(pc['alter0']['inside']['p50'])} / "
        f"{_ms(pc['alter0']['inside']['p99'])} | | | |",
    ]
    low = r.get("low")
    if low:
        lr, la = low["raw"]["client"], low["alter0"]["client"]
        lines += [
            f"| latency p50 / p99 at {low['rate']:g} items/s for {low['seconds']:g} s (ms) | {_ms(lr['p50'])} / "
            f"{_ms(lr['p99'])} | {_ms(la['p50'])} / {_ms(la['p99'])} | {la['p50'] / lr['p50']:.2f} / "
            f"{la['p99'] / lr['p99']:.2f} | | |",
        ]
    seg = (low or pc).get("segments") or {}
    if seg:
        lines += [
            f"| alter0 at {(low or pc)['rate']:g} items/s, p50 per segment (ms): submit → route starts / route / "
            f"→ generated / → closed | | {' / '.join(_ms(seg[k]) for k in ('pickup', 'route', 'generate', 'close'))} "
            f"| | | |",
        ]
    lines += [
        f"| worker RSS after warm-up → after {rss['n']} more messages (MiB) | | {rss['warm_kb'] / 1024:.1f} → "
        f"{rss['after_kb'] / 1024:.1f} | {growth:+.1%} | flat (< +10%) | {_mark(growth < 0.10)} |",
        f"| alter0 over those {rss['n']} messages: items/s, CPU per item (ms) | | {rss['n'] / rss['seconds']:.1f}, "
        f"{rss['cpu_ms']:.1f} | | | |",
        "",
        f"Floor (measured in this run three times, each in a fresh process: before the throughput rounds, between "
        f"the two alter0 rounds and after them, CPU per message {' / '.join(f'{x:.2f}' for x in fl['samples'])} ms; "
        f"the median is used, and its details follow): per message {fl['commits']} commits of one row each to "
        f"a SQLite WAL file with `synchronous = {fl['synchronous']}` ({fl['commit_cpu_ms']:.3f} ms CPU, "
        f"{fl['commit_wall_ms']:.2f} ms wall each) and one spawn of `{' '.join(fl['command'])}` fed a prompt on "
        f"stdin ({fl['spawn_cpu_ms']:.2f} ms CPU, {fl['spawn_wall_ms']:.2f} ms wall), over {fl['n']} messages. "
        f"fsyncs: `strace -f -c -e trace=fsync,fdatasync` attached to the consumer and to the submitting (bench) "
        f"process while {r['fsync_n']} items go through back to back (raw: fsync {fs['raw']['fsync']}, fdatasync "
        f"{fs['raw']['fdatasync']}; alter0: fsync {fs['alter0']['fsync']}, fdatasync {fs['alter0']['fdatasync']}; "
        f"the worker's heartbeats in that time are included).",
        "",
        f"Throughput: in-process submits (raw: `task()`; alter0: `service.submit`, one user per item), clock from "
        f"the first submit to the last done row, in rounds raw, alter0, alter0, raw of {tp['alter0']['n'] // 2} "
        f"items each (per round, items/s: raw {', '.join(f'{x:.1f}' for x in tp['raw']['rounds'])}; alter0 "
        f"{', '.join(f'{x:.1f}' for x in tp['alter0']['rounds'])}). Latency: the client's clock before the "
        f"enqueue (alter0: before `POST /api/jobs` to gunicorn, keep-alive) to the done row (raw: C's row; "
        f"alter0: `Job.finished_at`), halves raw, alter0, alter0, raw; the \"own stamp\" row starts at alter0's "
        f"`Job.created_at` instead; before them, each side ran 2 s at the first paced rate unrecorded (gunicorn's "
        f"workers answer their first requests slower: imports and connections).",
        "",
    ]
    rt, ro, rd, post = r["router"], r["routing"], r["ready"], r["post"]
    busy, idle = ro["busy"], ro["idle"]
    lines += [
        "| measure | value | target | |",
        "|---|---:|---|---|",
        f"| router decision, {rt['candidates']} candidate tasks ({rt['backend']}; `candidates.candidates` + "
        f"`route_decision`), p50 / p99 of {rt['n']} | {rt['p50']:.1f} / {rt['p99']:.1f} ms | | |",
        f"| routing a new message (submit → routed, 8 candidates), idle worker, p50 / max of {idle['n']} "
        f"| {idle['p50']:.0f} / {idle['max']:.0f} ms | | |",
        f"| routing a new message while 8 long ({r['long_sec']:g} s) generations run, p50 / max of {busy['n']} "
        f"| {busy['p50']:.0f} / {busy['max']:.0f} ms | p50 < 50 ms | {_mark(busy['p50'] < 50)} |",
        f"| ready: web (spawn gunicorn → `GET /health` 200) | {rd['web']:.2f} s | < 2 s | {_mark(rd['web'] < 2)} |",
        f"| ready: worker, fresh output dir (spawn `alter0 worker` → first heartbeat row) | {rd['worker']:.2f} s "
        f"| < 2 s | {_mark(rd['worker'] < 2)} |",
        f"| ready: worker restart (9 threads, existing database) | {ro['worker_restart_ready_s']:.2f} s | < 2 s "
        f"| {_mark(ro['worker_restart_ready_s'] < 2)} |",
        f"| `POST /api/jobs` under gunicorn ({r['web_workers']}×{r['web_threads']} gthread), {post['tool']}, "
        f"{r['post_sec']:g} s, worker stopped | {post['rps']:.0f} req/s (p50 {post['p50_ms']:.1f} ms, p99 "
        f"{post['p99_ms']:.1f} ms, {post['errors']} errors) | | |",
        "",
        f"Routing rows: the worker restarted with 9 threads (8 generation slots + 1 for route/close) and an "
        f"executor that sleeps on a \"[long]\" prompt; 8 tasks of the probe user each run a long generation "
        f"({ro['long_running_at_end']} still running after the last probe); each probe is a new message from "
        f"that user, routed by the embedded router among the 8 tasks; latency = `generating_at - created_at`.",
        "",
    ]
    return "\n".join(lines)
