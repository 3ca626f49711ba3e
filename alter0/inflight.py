"""What one worker process is running now: each stage's cancel event, lease tokens, the generation slots
and the drain flag. The supervisor reads it; ``stages.run_stage`` registers runs in it."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class InFlight:
    """The in-flight stages of a worker process (``owner`` is the worker id its lease tokens start with)."""

    def __init__(self, owner: str, workers: int):
        self.owner = owner
        self.lock = threading.Lock()
        self.jobs: dict[int, threading.Event] = {}
        self.draining = threading.Event()
        #: generation uses at most workers - 1 threads, so routing and closing always have one
        self.generation_slots = threading.BoundedSemaphore(max(1, workers - 1))
        #: a generation was parked for want of a slot: the next one to finish looks for parked generations
        self.slot_parked = False
        self._leases = 0

    def lease_token(self) -> str:
        """A fresh lease token: the worker's id plus a counter, so two runs in one process never share one."""
        with self.lock:
            self._leases += 1
            return f"{self.owner}#{self._leases}"

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
