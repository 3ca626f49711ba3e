"""What one worker process is running now: each stage's cancel event, lease tokens, the generation slots
and the drain flag. The supervisor reads it; ``stages.run_stage`` registers runs in it. Also the process's
stage turn (``STAGE_TURN``): one stage thread runs Python at a time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator


class InFlight:
    """The in-flight stages of a worker process (``owner`` is the worker id its lease tokens start with)."""

    def __init__(self, owner: str, workers: int):
        self.owner = owner
        self.lock = threading.Lock()
        self.jobs: dict[int, threading.Event] = {}
        self.draining = threading.Event()
        #: generation uses at most workers - 1 threads, so routing and closing always have one
        self.generation_slots = threading.BoundedSemaphore(max(1, workers - 1))
        #: generations waiting for a slot, oldest first: a freed slot goes to them (``take_slot_waiter``)
        self._slot_waiters: OrderedDict[int, None] = OrderedDict()
        self._leases = 0

    def lease_token(self) -> str:
        """A fresh lease token: the worker's id plus a counter, so two runs in one process never share one."""
        with self.lock:
            self._leases += 1
            return f"{self.owner}#{self._leases}"

    def wait_for_slot(self, job_id: int) -> None:
        """Remember a generation that found every slot taken (once, however often it comes back meanwhile)."""
        with self.lock:
            self._slot_waiters[job_id] = None

    def slot_waiters(self) -> frozenset[int]:
        """The generations of this process waiting for a slot now (each runs when one frees)."""
        with self.lock:
            return frozenset(self._slot_waiters)

    def take_slot_waiter(self) -> int | None:
        """The oldest generation waiting for a slot, with a slot taken for it (the caller runs the job or gives
        the slot back); None if no slot is free or nobody waits."""
        if not self.generation_slots.acquire(blocking=False):
            return None
        with self.lock:
            if self._slot_waiters:
                return self._slot_waiters.popitem(last=False)[0]
        self.generation_slots.release()
        return None

    def snapshot(self) -> dict[int, threading.Event]:
        """Job id -> cancel event of every run registered now."""
        with self.lock:
            return dict(self.jobs)

    @contextmanager
    def running(self, job_id: int) -> Iterator[threading.Event]:
        """Register an in-flight job; yields its cancel event (set by a cancel request or a forced stop)."""
        event = threading.Event()
        with self.lock:
            self.jobs[job_id] = event
        try:
            yield event
        finally:
            with self.lock:  # the job's next stage may have registered already (its message is sent before
                if self.jobs.get(job_id) is event:  # this stage returns): leave that one in place
                    del self.jobs[job_id]


class StageTurn:
    """One stage thread of the process runs at a time, except while it waits (an agent's run, an LLM backend's
    answer, a model being loaded, a git command): ``held`` around a stage, ``released`` around such a wait.

    A worker's stages are bound by one core's Python (the GIL) whatever their number of threads; left to the
    GIL, the threads hand it over at every SQLite statement and file write, some 240 futex calls and 100
    context switches per message, about a fifth of its CPU. Taking turns per stage instead costs one hand-over
    per stage and the same throughput. ``released`` is never used inside a database transaction (a thread
    waiting for its turn there could hold the write lock another needs)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._local = threading.local()
        self._take: Callable[[], None] = lambda: None
        self._give: Callable[[], None] = lambda: None

    def on_switch(self, take: Callable[[], None], give: Callable[[], None]) -> None:
        """Run ``take`` in a thread that has just taken the turn and ``give`` in one about to give it up (the
        database points the turn's holder at one shared connection: ``database.LockedSqliteDatabase``)."""
        self._take, self._give = take, give

    def holding(self) -> bool:
        """Whether this thread has the turn."""
        return getattr(self._local, "held", False)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Have the turn for the block (at once if this thread has it already)."""
        if self.holding():
            yield
            return
        self._lock.acquire()
        self._local.held = True
        try:
            self._take()
            try:
                yield
            finally:
                self._give()
        finally:
            self._local.held = False
            self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give the turn up for a wait, and take it back after (nothing to do for a thread without it)."""
        if not self.holding():
            yield
            return
        self._give()
        self._local.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._local.held = True
            self._take()


#: The stage turn of this process.
STAGE_TURN = StageTurn()
