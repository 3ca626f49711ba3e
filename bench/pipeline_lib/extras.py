"""The measurements beside the pipeline: router decision latency with 8 candidates, routing of a new message
while 8 long generations run, and POST /api/jobs requests/s under gunicorn (wrk, or a threaded client)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from alter0 import memory, service
from alter0.candidates import candidates
from alter0.decide import route_decision
from alter0.models import Job, Message, Task, TERMINAL
from alter0.routing.base import RouteInput

HERE = Path(__file__).resolve().parent
TOPICS = ["fix the flaky login test in the auth suite", "add pagination to the users list endpoint",
          "speed up the nightly csv export job", "write a haiku about message queues",
          "migrate the settings page to the new design", "explain why the docker build cache misses",
          "translate the onboarding emails to german", "profile memory use of the image resizer"]
REPLIES = ["done, the test now waits for the session cookie", "added limit and cursor parameters",
           "the export now streams rows instead of loading them", "queues hum softly / workers wake",
           "the page uses the new components", "the COPY of the lockfile comes after the sources",
           "here are the translated emails", "the resizer keeps every frame in memory"]


def make_tasks(rt, user_id: str, turns: int = 4) -> list[int]:
    """8 open tasks in the user's scope, each with ``turns`` messages in its memory (as routing left them)."""
    ids = []
    for topic, reply in zip(TOPICS, REPLIES):
        task = Task.create(title=topic, scope=f"user:{user_id}", user_id=user_id, executor="command")
        for i in range(turns):
            role, text = ("user", f"{topic} (part {i})") if i % 2 == 0 else ("assistant", reply)
            msg = Message.create(task=task.id, role=role, content=text, user_id=user_id if role == "user" else "alter0")
            memory.append_turn(rt.cfg, task.id, msg)
        ids.append(task.id)
    return ids


def percentiles(values: list[float]) -> dict:
    """p50, p99 (inclusive quantiles) and max, in the values' unit."""
    if len(values) < 2:
        return {"p50": values[0], "p99": values[0], "max": values[0], "n": len(values)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p99": q[98], "max": max(values), "n": len(values)}


def router_latency(rt, n: int) -> dict:
    """ms per decision: candidates.candidates (8 open tasks, from the database) + the configured router."""
    user = "router-bench"
    make_tasks(rt, user)
    scope = f"user:{user}"
    route_decision(rt, RouteInput("warm up", user, "", time.time(), candidates(rt.cfg, scope)))
    times = []
    for i in range(n):
        text = f"{TOPICS[i % len(TOPICS)].split(' ', 2)[-1]}: one more thing, case {i}"
        t = time.perf_counter()
        cands = candidates(rt.cfg, scope)
        route_decision(rt, RouteInput(text, user, "", time.time(), cands))
        times.append((time.perf_counter() - t) * 1000)
    return {**percentiles(times), "backend": rt.router.name, "candidates": len(cands)}


def _wait(cond, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll)


def _probe(rt, user: str, i: int) -> float:
    """Submit one new message for ``user``; ms from its submit to the end of its routing (generating_at)."""
    job, _ = service.submit(rt, f"{TOPICS[i % len(TOPICS)].split(' ', 3)[-1]} -- follow-up {i}", user)
    _wait(lambda: Job.get_by_id(job.id).status not in ("queued", "routing"), 30, f"job {job.id} to route")
    j = Job.get_by_id(job.id)
    if j.generating_at is None:
        raise RuntimeError(f"probe job {j.id} did not route: {j.status} {j.error}")
    return (j.generating_at - j.created_at) * 1000


def routing_under_load(rt, inst, probes: int, long_sec: float) -> dict:
    """Routing of new messages (8 candidate tasks) idle, then while 8 long generations run on those tasks.

    The worker is restarted with 9 threads (8 generation slots + 1 for route/close) and an executor that
    sleeps ``long_sec`` on a "[long]" prompt; its restart-to-heartbeat time is returned too.
    """
    config = json.loads(inst.config_path.read_text())
    config["runtime"]["queue"] = {**config["runtime"].get("queue", {}), "workers": 9}
    config["executor"]["command"] = [str(HERE / "slow_or_cat.sh")]
    inst.config_path.write_text(json.dumps(config, indent=2))
    inst.env["PIPELINE_LONG_SEC"] = str(long_sec)
    inst.stop_worker()
    restart = inst.start_worker()
    user = "probe"
    tasks = make_tasks(rt, user)
    unfinished = Job.select().where(Job.status.not_in([s.value for s in TERMINAL]))
    idle = []
    for i in range(probes + 1):  # the first one warms the worker's router up (it is not counted)
        _wait(lambda: not unfinished.exists(), 60, "the previous probe to end", poll=0.01)
        ms = _probe(rt, user, i)
        idle += [ms] if i else []
    # a prompt holds the task's memory when it is built: a later "[long]" turn would make a probe long too
    _wait(lambda: not unfinished.exists(), 60, "the idle probes to end", poll=0.05)
    long_jobs = [service.submit(rt, f"[long] keep working on it ({k})", user, task_id=t)[0].id
                 for k, t in enumerate(tasks)]
    running = Job.select().where(Job.id.in_(long_jobs) & (Job.status == "generating") & Job.lease_owner.is_null(False))
    _wait(lambda: running.count() == len(long_jobs), 60, "8 long generations to start", poll=0.05)
    time.sleep(0.5)  # the executors are spawned and sleeping
    busy = []
    for i in range(probes):
        busy.append(_probe(rt, user, 100 + i))
        time.sleep(0.2)
    still = running.count()
    for j in list(unfinished):
        service.cancel(j.id)
    _wait(lambda: not unfinished.exists(), 60, "the long jobs to end", poll=0.05)
    return {"idle": percentiles(idle), "busy": percentiles(busy), "long_running_at_end": still,
            "worker_restart_ready_s": restart}


def post_rate(port: int, seconds: float, connections: int = 16) -> dict:
    """POST /api/jobs requests/s on loopback for ``seconds``: wrk (2 threads) when installed, else threads."""
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", str(HERE / "post_jobs.lua"), f"http://127.0.0.1:{port}/api/jobs"],
                             capture_output=True, text=True, timeout=seconds + 60)
        line = re.search(r"WRK_JSON (\{.*\})", out.stdout)
        if not line:
            raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
        s = json.loads(line.group(1))
        return {"tool": f"wrk -t2 -c{connections}", "rps": s["requests"] / (s["duration_us"] / 1e6),
                "requests": s["requests"], "errors": s["non_2xx"] + s["socket_errors"],
                "p50_ms": s["p50_us"] / 1000, "p99_ms": s["p99_us"] / 1000}
    return _threaded_post_rate(port, seconds, connections)


def _threaded_post_rate(port: int, seconds: float, connections: int) -> dict:
    """The fallback load tool: ``connections`` threads, each on a keep-alive http.client connection."""
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() < end:
            n += 1
            body = json.dumps({"content": f"load message {k}-{n}", "user_id": f"load-{k}-{n}"})
            t = time.perf_counter()
            conn.request("POST", "/api/jobs", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            with lock:
                times.append((time.perf_counter() - t) * 1000)
                errors[0] += resp.status != 202
    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p = percentiles(times)
    return {"tool": f"python threads x{connections}", "rps": len(times) / (time.monotonic() - started),
            "requests": len(times), "errors": errors[0], "p50_ms": p["p50"], "p99_ms": p["p99"]}
