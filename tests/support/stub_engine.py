"""The stub queue engine (as dramatiq's ``stub_broker`` + ``stub_worker``): a real alter0 Queue whose messages
run the real stage code, ``alter0.stages.run_stage``, in this process.

- ``StubQueue(threads=0)``: inline. Messages wait in memory until ``join()`` runs them, in due order, in the
  calling thread (a stage's follow-up messages included) until none is left.
- ``StubQueue(threads=4)``: a thread pool consumes them as they come (after their delay), like a worker.
- ``pause()`` / ``resume()``: a stopped consumer; messages wait (``backlog()`` counts them) until resumed.
- ``fail``: an exception ``_send`` raises, as a queue store that refuses a message would.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from alter0 import stages
from alter0.queue import Queue

#: A threaded stub starts a message no sooner than this (seconds): the stage that sent it releases its lease
#: first, as on a real engine (a worker shares one lease owner across its threads).
HAND_OFF_SEC = 0.05


class StubQueue(Queue):
    """Runs each enqueued stage through ``stages.run_stage`` in this process; ``rt`` is set by ``make_runtime``."""

    name = "stub"

    def __init__(self, threads: int = 0):
        self.rt = None
        self.sent: list[tuple[str, int]] = []  # every message accepted, in order
        self.ran: list[tuple[str, int]] = []  # every message handed to run_stage, in order
        self.fail: BaseException | None = None
        self._due: list[tuple[float, int, str, int]] = []  # (due, seq, stage, job id): not started yet
        self._seq = itertools.count()
        self._running = 0
        self._paused = False
        self._cond = threading.Condition()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="stub-stage") if threads else None

    # --- the Queue contract --------------------------------------------------------------------------
    def _send(self, stage: str, job_id: int, delay: float) -> None:
        self._put(stage, job_id, delay, urgent=False)

    def _send_urgent(self, stage: str, job_id: int) -> None:
        """A hand-off goes ahead of every message already waiting."""
        self._put(stage, job_id, 0.0, urgent=True)

    def backlog(self) -> int:
        """Messages accepted and not started yet."""
        with self._cond:
            return len(self._due)

    # --- control -------------------------------------------------------------------------------------
    def pause(self) -> None:
        """Stop consuming: messages wait until ``resume``."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            if self.pool is not None:
                for _ in self._due:
                    self._start_one()

    def join(self, timeout: float = 30.0) -> None:
        """Run (inline) or wait for (threads) every message, follow-ups included, until none is left."""
        deadline = time.monotonic() + timeout
        if self.pool is None:
            while self._due and not self._paused:
                assert time.monotonic() < deadline, f"stub queue still busy after {timeout} s: {self._due}"
                due, _, stage, job_id = heapq.heappop(self._due)
                time.sleep(max(0.0, due - time.monotonic()))
                self._run(stage, job_id)
            return
        with self._cond:
            while self._running or (self._due and not self._paused):
                left = deadline - time.monotonic()
                assert left > 0, f"stub queue still busy after {timeout} s: {self._due}"
                self._cond.wait(left)

    def close(self) -> None:
        """Drop waiting messages and stop the threads (after the stages running now)."""
        with self._cond:
            self._due.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    # --- inside ----------------------------------------------------------------------------------------
    def _put(self, stage: str, job_id: int, delay: float, urgent: bool) -> None:
        if self.fail is not None:
            raise self.fail
        with self._cond:
            self.sent.append((stage, job_id))
            due = float("-inf") if urgent else time.monotonic() + delay
            heapq.heappush(self._due, (due, next(self._seq), stage, job_id))
            if self.pool is not None and not self._paused:
                self._start_one()

    def _start_one(self) -> None:
        """Give the pool one waiting message to take (it takes the earliest due when its thread starts)."""
        self._running += 1
        self.pool.submit(self._take)

    def _take(self) -> None:
        try:
            with self._cond:
                if self._paused or not self._due:  # resume() gives the pool one take per waiting message
                    return
                due, _, stage, job_id = heapq.heappop(self._due)
            time.sleep(max(HAND_OFF_SEC, due - time.monotonic()))
            self._run(stage, job_id)
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _run(self, stage: str, job_id: int) -> None:
        self.ran.append((stage, job_id))
        stages.run_stage(self.rt, stage, job_id)


def make_runtime(config_path, queue: Queue, environ: dict | None = None, **overrides):
    """A Runtime on ``config_path`` (no environment unless ``environ``; ``key__sub`` overrides) with ``queue``."""
    from alter0.config import load_config
    from alter0.runtime import Runtime
    cfg = load_config(config_path, env=environ if environ is not None else {},
                      overrides={k.replace("__", "."): v for k, v in overrides.items()})
    rt = Runtime(cfg, queue)
    queue.rt = rt
    return rt
