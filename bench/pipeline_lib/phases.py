"""Throughput (N items as fast as they can be submitted) and paced latency (a fixed rate for some seconds),
for the raw Huey chain and for alter0, timed the same way: enqueue (the client's clock) to done (a row
written by the last step). Every function returns plain numbers; nothing here prints.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from alter0 import service
from alter0.models import Job, TERMINAL

from . import rawchain

END = [s.value for s in TERMINAL]
POLL_SEC = 0.05


class Raw:
    """The baseline's client side: enqueue chain A for an item, read the done rows."""

    name = "raw"

    def __init__(self):
        self.items = itertools.count()  # next() is atomic: the pacer's threads never share an item

    def submit(self, _tag: str) -> int:
        item = next(self.items)
        rawchain.submit(item)
        return item

    def finished(self, ids: list[int], timeout: float) -> dict[int, tuple[float, float]]:
        """item -> (enqueued_at, done_at) once every item is done (or ``timeout`` passed)."""
        lo, hi = min(ids), max(ids) + 1
        deadline = time.monotonic() + timeout
        while True:
            rows = rawchain.done_rows(lo, hi)
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                return {item: (enq, done) for item, enq, done in rows}
            time.sleep(POLL_SEC)


class Alter0:
    """alter0's client side: submit in this process (service.submit) or by POST /api/jobs; read Job rows."""

    name = "alter0"

    def __init__(self, rt, port: int | None = None):
        self.rt, self.port = rt, port
        self._local = threading.local()

    def submit(self, tag: str) -> int:
        job, _ = service.submit(self.rt, f"bench message {tag}", f"bench-{tag}")
        return job.id

    def post(self, tag: str) -> int:
        """POST /api/jobs on this thread's keep-alive connection; the job id."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps({"content": f"bench message {tag}", "user_id": f"bench-{tag}"})
        conn.request("POST", "/api/jobs", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 202:
            raise RuntimeError(f"POST /api/jobs answered {resp.status}: {data[:300]!r}")
        return json.loads(data)["job_id"]

    def finished(self, ids: list[int], timeout: float) -> dict[int, tuple[float, float]]:
        """job id -> (created_at, finished_at) once every job ended (or ``timeout`` passed); failures raise."""
        deadline = time.monotonic() + timeout
        lo, hi = min(ids), max(ids)
        while True:
            rows = list(Job.select(Job.id, Job.status, Job.created_at, Job.finished_at, Job.error)
                        .where(Job.id.between(lo, hi) & Job.status.in_(END)))
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                bad = [r for r in rows if r.status != "done"]
                if bad:
                    raise RuntimeError(f"{len(bad)} job(s) did not end done, e.g. job {bad[0].id}: "
                                       f"{bad[0].status} {bad[0].error}")
                return {r.id: (r.created_at, r.finished_at) for r in rows}
            time.sleep(POLL_SEC)


def segments(ids: list[int]) -> dict[str, list[float]]:
    """Seconds each alter0 job spent per segment: submit → route start, route, generate, close (each of the
    last three from the previous stage's end, so it includes that stage's queue pickup)."""
    out: dict[str, list[float]] = {"pickup": [], "route": [], "generate": [], "close": []}
    for j in Job.select(Job.created_at, Job.routing_at, Job.generating_at, Job.closing_at, Job.finished_at).where(
            Job.id.in_(ids)):
        marks = [j.created_at, j.routing_at, j.generating_at, j.closing_at, j.finished_at]
        if None not in marks:
            for name, a, b in zip(out, marks, marks[1:]):
                out[name].append(b - a)
    return out


def throughput(side, n: int, tag: str, timeout: float = 900) -> dict:
    """Submit ``n`` items back to back, wait for all; items/s from the first submit to the last done."""
    start = time.time()
    ids = [side.submit(f"{tag}-{i}") for i in range(n)]
    submitted = time.time()
    done = side.finished(ids, timeout)
    if len(done) < n:
        raise RuntimeError(f"{side.name}: only {len(done)} of {n} items finished within {timeout}s")
    end = max(d for _, d in done.values())
    return {"n": n, "seconds": end - start, "submit_seconds": submitted - start}


def paced(side, send: Callable[[str], int], rate: float, seconds: float, tag: str, timeout: float = 300) -> dict:
    """Send ``rate`` items/s for ``seconds`` (a pool of senders keeps the schedule); per-item latencies.

    ``client`` latency: the sender's clock before the request to done; ``inside``: the system's own
    enqueue stamp (alter0: Job.created_at) to done.
    """
    sent: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t = time.time()
        item = send(f"{tag}-{i}")
        with lock:
            sent.append((item, t))

    count = int(rate * seconds)
    start = time.monotonic()
    with ThreadPoolExecutor(4, thread_name_prefix="pacer") as pool:
        futures = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
        for f in futures:
            f.result()
    done = side.finished([item for item, _ in sent], timeout)
    if len(done) < count:
        raise RuntimeError(f"{side.name}: only {len(done)} of {count} paced items finished")
    client = [done[item][1] - t for item, t in sent]
    inside = [d - c for c, d in done.values()]
    return {"client": client, "inside": inside,
            "segments": segments([item for item, _ in sent]) if isinstance(side, Alter0) else {}}
