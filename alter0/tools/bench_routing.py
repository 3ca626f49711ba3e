"""`alter0 bench routing`: replay an annotated chat stream through the router and write one prediction per message."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from ..decide import accepts_route
from ..routing.base import Candidate, RouteDecision, RouteInput, Turn, validate_route

logger = logging.getLogger(__name__)

BENCH_CANDIDATE_LIMIT = 24  # IRC rooms keep many conversations open at once; see docs
BENCH_MEMORY_TURNS = 8
EMPTY = "(empty message)"  # the kernel refuses empty content; a few chat lines are empty


#: Work done in this process and its pool's (a shared multiprocessing Value, or None): each message counts twice,
#: once embedded (prewarm) and once routed, so a replay of N messages is 2N ticks; ``run`` draws the bar from it.
_TICKS = None


def _share_ticks(ticks) -> None:
    """Pool initializer: count into the parent's shared Value."""
    global _TICKS
    _TICKS = ticks


def _tick(n: int = 1) -> None:
    if _TICKS is not None:
        with _TICKS.get_lock():
            _TICKS.value += n


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_room(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Records per ``channel_file``, rooms in order of first appearance, each room's records in stream order."""
    rooms: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        rooms[r["channel_file"]].append(r)
    return rooms


def stream_times(records: list[dict]) -> list[float]:
    """Epoch seconds for each record of one room: date from the file name, HH:MM, midnight wrap, strictly rising."""
    name = records[0]["channel_file"] if records else ""
    try:
        day = datetime.strptime(name[:10], "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        day = 0.0
    out, prev, offset = [], day, 0.0
    for r in records:
        t = prev
        hhmm = r.get("time")
        if hhmm:
            h, m = (int(x) for x in hhmm.split(":")[:2])
            t = day + offset + h * 3600 + m * 60
            if t < prev - 3600:  # clock went back: past midnight
                offset += 86400
                t += 86400
        t = max(t, prev + 0.01)
        out.append(t)
        prev = t
    return out


@dataclass
class _Task:
    id: int
    title: str
    turns: list[Turn] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    last_active_at: float = 0.0
    created_at: float = 0.0


class InlineRoom:
    """One channel-scoped room held in memory, shaped like the kernel's route stage (open tasks, recent first)."""

    def __init__(self, router, threshold: float, limit: int, memory_turns: int, next_id: Callable[[], int]):
        self.router, self.threshold, self.limit, self.memory_turns = router, threshold, limit, memory_turns
        self.tasks: dict[int, _Task] = {}
        self.next_id = next_id

    def route_input(self, content: str, user_id: str, channel: str, at: float) -> RouteInput:
        open_tasks = sorted(self.tasks.values(), key=lambda t: (t.last_active_at, t.id), reverse=True)
        cands = [Candidate(t.id, t.title, t.turns[-self.memory_turns:], list(t.participants),
                           t.last_active_at, t.created_at) for t in open_tasks[:self.limit]]
        return RouteInput(content, user_id, channel, at, cands)

    def route(self, content: str, user_id: str, channel: str, at: float) -> tuple[int, RouteDecision, RouteInput]:
        inp = self.route_input(content, user_id, channel, at)
        dec = validate_route(self.router.route(inp), {c.task_id for c in inp.candidates})
        task_id = dec.task_id if accepts_route(dec, self.threshold) else None
        if task_id is None:
            task_id = self.next_id()
            first = " ".join(content.split())
            title = (first[:80] + ("…" if len(first) > 80 else "")) or "untitled"
            self.tasks[task_id] = _Task(task_id, title, created_at=at)
        task = self.tasks[task_id]
        task.turns.append(Turn("user", content, user_id, at))
        if user_id not in task.participants:
            task.participants.append(user_id)
        task.last_active_at = at
        return task_id, dec, inp


def replay(records: Iterable[dict], router, threshold: float, limit: int = BENCH_CANDIDATE_LIMIT,
           memory_turns: int = BENCH_MEMORY_TURNS, hook: Callable | None = None, progress: bool = True) -> list[dict]:
    """Route every record, room by room in stream order; return one prediction per record."""
    rooms = by_room(records)
    counter = iter(range(1, 10**9))
    preds, done, total, started = [], 0, sum(len(v) for v in rooms.values()), time.time()
    for name, recs in rooms.items():
        room = InlineRoom(router, threshold, limit, memory_turns, lambda: next(counter))
        for r, at in zip(recs, stream_times(recs)):
            task_id, dec, inp = room.route(r["text"] if r["text"].strip() else EMPTY, r["speaker"], name, at)
            preds.append({"channel_file": name, "idx": r["idx"], "pred_thread": str(task_id),
                          **({"context": True} if r.get("is_context") else {})})
            if hook:
                hook(r, inp, dec, task_id, room)
            done += 1
            _tick()
            if progress and done % 500 == 0:
                print(f"  routed {done}/{total} messages ({time.time() - started:.0f}s)", file=sys.stderr)
    return preds


class ReplayClock:
    """Stands in for ``time.time`` during a replay so stored times are the chat's own (minutes apart)."""

    def __init__(self):
        self.t = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self.t

    def __enter__(self) -> "ReplayClock":
        time.time = self
        return self

    def __exit__(self, *exc) -> None:
        time.time = self._real


def replay_kernel(records: list[dict], cfg_overrides: dict, workdir: str | Path, progress: bool = True,
                  hook: Callable | None = None, config: str | None = None, tag: str = "") -> list[dict]:
    """Route every record through the real route stage (in-process queue, no generation, no closing)."""
    from .. import service, stages
    from ..jobstate import job_by_id
    from ..queue import InlineQueue
    from ..runtime import Runtime, set_runtime

    rt = Runtime.open(config, queue=InlineQueue(), runtime__output_dir=str(workdir), task__scope="channel",
                      runtime__db__synchronous="normal", executor__name="command", executor__command=["true"],
                      **cfg_overrides)
    set_runtime(rt)
    rooms = by_room(records)
    preds, done, total, started = [], 0, len(records), time.monotonic()
    try:
        with ReplayClock() as clock:
            for name, recs in rooms.items():
                for r, at in zip(recs, stream_times(recs)):
                    clock.t = at
                    job, _ = service.submit(rt, r["text"] if r["text"].strip() else EMPTY, user_id=r["speaker"],
                                            channel_id=name)
                    stages.run_stage(rt, "route", job.id)
                    job = job_by_id(job.id)
                    rt.queue.sent.clear()
                    preds.append({"channel_file": name, "idx": r["idx"], "pred_thread": str(job.task_id),
                                  **({"context": True} if r.get("is_context") else {})})
                    if hook:
                        hook(r, job)
                    done += 1
                    _tick()
                    if progress and done % 500 == 0:
                        print(f"  {tag}routed {done}/{total} messages ({time.monotonic() - started:.0f}s)",
                              file=sys.stderr, flush=True)
    finally:
        set_runtime(None)
        rt.database.close()
    return preds


def load_stream(input: str | Path, context: str | Path | None = None) -> list[dict]:
    """Context lines first (marked), then the annotated lines, each room in idx order."""
    ctx = [dict(r, is_context=True) for r in read_jsonl(context)] if context else []
    recs = ctx + read_jsonl(input)
    order = {name: i for i, name in enumerate(dict.fromkeys(r["channel_file"] for r in recs))}
    return sorted(recs, key=lambda r: (order[r["channel_file"]], r["idx"]))


def run(input: str, context: str | None, output: str, backend: str = "embedded", engine: str = "kernel",
        candidate_limit: int = BENCH_CANDIDATE_LIMIT, config: str | None = None, progress: bool = True,
        jobs: int | None = None, on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Replay ``input`` (after ``context``) through the router; write predictions to ``output``; return stats.

    engine ``kernel`` runs the real route stage on temp SQLite databases (channel scope), rooms spread over
    ``jobs`` processes (default: one per core), each with a database of its own;
    engine ``inline`` keeps the same open-task state in memory (one process; a faster approximation).
    ``on_progress(done, total, what)`` is called about ten times a second with the work done (each message
    embedded, then routed: 2 per message), from this process whatever the number of workers.
    """
    import multiprocessing
    import threading

    from ..config import load_config
    from ..routing.registry import build_router

    overrides = {"router.backend": backend, "task.open_task_candidate_limit": candidate_limit}
    records = load_stream(input, context)
    started = time.monotonic()
    ticks = multiprocessing.get_context("spawn").Value("q", 0)
    _share_ticks(ticks)
    stop = threading.Event()
    reporter = threading.Thread(target=_report, args=(ticks, 2 * len(records), on_progress, stop), daemon=True)
    if on_progress is not None:
        reporter.start()
    try:
        if engine == "kernel":
            groups = room_groups(records, jobs or os.cpu_count() or 1)
            if len(groups) == 1:
                preds, about = _replay_kernel_group((records, overrides, config, progress, ""))
            else:
                with multiprocessing.get_context("spawn").Pool(len(groups), _share_ticks, (ticks,)) as pool:
                    done = pool.map(_replay_kernel_group, [(g, overrides, config, progress,
                                                            f"[{i + 1}/{len(groups)}] ") for i, g in enumerate(groups)])
                order = {name: i for i, name in enumerate(by_room(records))}
                preds = sorted((p for part, _ in done for p in part), key=lambda p: order[p["channel_file"]])
                about = done[0][1]
        else:
            cfg = load_config(config, overrides=overrides)
            router = build_router(cfg)
            prewarm(router, records, progress)
            preds = replay(records, router, cfg["task.routing_confidence_threshold"], candidate_limit,
                           cfg["task.memory_turns"], progress=progress)
            about = _about(router)
    finally:
        stop.set()
        if reporter.is_alive():
            reporter.join()
        _share_ticks(None)
    if on_progress is not None:
        on_progress(2 * len(records), 2 * len(records), f"{len(records)} messages routed")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(p) + "\n")
    return {"messages": len(preds), "scored": sum(1 for p in preds if not p.get("context")),
            "seconds": round(time.monotonic() - started, 1), **about, "engine": engine,
            "candidate_limit": candidate_limit}


def _report(ticks, total: int, on_progress: Callable[[int, int, str], None], stop) -> None:
    """Call ``on_progress`` with the shared count about ten times a second until ``stop`` is set."""
    while not stop.wait(0.1):
        done = ticks.value
        on_progress(min(done, total), total, "embedding and routing messages")


def room_groups(records: list[dict], jobs: int) -> list[list[dict]]:
    """Split the stream into at most ``jobs`` groups of whole rooms with about as many messages each."""
    rooms = by_room(records)
    groups: list[list[dict]] = [[] for _ in range(max(1, min(jobs, len(rooms))))]
    for recs in sorted(rooms.values(), key=len, reverse=True):
        min(groups, key=len).extend(recs)
    return [g for g in groups if g]


def _about(router) -> dict:
    return {"backend": router.name, "version": router.version,
            "degraded_reason": getattr(router, "degraded_reason", "")}


def _replay_kernel_group(job: tuple) -> tuple[list[dict], dict]:
    """Route one group of rooms through the real route stage on a database of its own (run in a process)."""
    import tempfile

    from ..config import load_config
    from ..routing.registry import build_router

    records, overrides, config, progress, tag = job
    router = build_router(load_config(config, overrides=overrides))
    prewarm(router, records, progress, tag)
    with tempfile.TemporaryDirectory(prefix="alter0-bench-") as tmp:
        preds = replay_kernel(records, {k.replace(".", "__"): v for k, v in overrides.items()}, tmp,
                              progress=progress, config=config, tag=tag)
    return preds, _about(router)


def prewarm(router, records: list[dict], progress: bool, tag: str = "", batch: int = 1) -> None:
    """Embed every text of the stream once (the router then hits its cache): one text per model run by default,
    so every vector is the one the route stage computes for that message in production (int8 activations are
    quantized per run: a batch's vectors differ slightly from single runs)."""
    embedder = getattr(router, "embedder", None)
    if embedder is None:
        _tick(len(records))
        return
    from ..routing.text import is_notice
    texts = [r["text"] for r in records if r["text"].strip() and not is_notice(r["text"])]
    embedder.reserve(len(texts) + 1000)  # every text stays cached until the decisions read it
    _tick(len(records) - len(texts))  # nothing to embed for these
    for i in range(0, len(texts), 2000):
        if batch > 1:
            embedder.embed_many(texts[i:i + 2000], batch)
            _tick(len(texts[i:i + 2000]))
        else:
            for text in texts[i:i + 2000]:
                embedder.embed(text)
                _tick()
        if progress:
            print(f"  {tag}embedded {min(i + 2000, len(texts))}/{len(texts)} texts", file=sys.stderr, flush=True)
