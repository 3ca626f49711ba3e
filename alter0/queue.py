"""The queue-engine contract the stages use to hand work on; engines live in tasks/ (Huey, Dramatiq)."""

from __future__ import annotations

import importlib
import logging

from . import jobstate
from .config import Config

log = logging.getLogger(__name__)
STAGES = ("route", "generate", "close")


class Queue:
    """Puts one stage of one job on a queue. Engines implement ``_send``."""

    name = "base"
    #: whether a worker thread may run a hand-off itself instead of sending it (no lock of the engine's is held
    #: around a stage; see ``stages._give_slots``)
    runs_hand_offs = False

    def enqueue(self, stage: str, job_id: int, delay: float = 0.0, urgent: bool = False,
                stamped: bool = False) -> bool:
        """Queue ``stage`` for ``job_id``; False (logged) if the queue store refused — the reclaim sweep retries.

        ``urgent`` marks a hand-off (a parked job whose turn came): engines that can, run it ahead of new work.
        The job row first records the send (``dispatched_at``; a job with a message on its way is no longer
        parked); ``stamped`` says the caller already wrote that in the transaction it just committed.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if not stamped:
            jobstate.mark_dispatched(job_id)
        try:
            if urgent:
                self._send_urgent(stage, job_id)
            else:
                self._send(stage, job_id, delay)
            return True
        except Exception as exc:  # the job row is the truth; the sweep re-sends
            log.warning("enqueue of %s for job %s failed: %s", stage, job_id, exc,
                        extra={"job_id": job_id, "stage": stage})
            return False

    def _send(self, stage: str, job_id: int, delay: float) -> None:
        raise NotImplementedError

    def _send_urgent(self, stage: str, job_id: int) -> None:
        """A hand-off; engines that can put it ahead of new work override this."""
        self._send(stage, job_id, 0.0)

    def backlog(self) -> int | None:
        """Messages waiting in the engine's store, if it can tell."""
        return None

    def pending(self) -> set[tuple[str, int]] | None:
        """The (stage, job id) of every message the engine's store holds and no consumer has finished with
        (waiting, delayed or taken but not acknowledged), or None if the engine cannot list them. The
        supervisor's dispatch sweep re-sends the message of a job that waits for one in vain."""
        return None


class InlineQueue(Queue):
    """Records what would be queued; used to run stages in-process (replays, tools)."""

    name = "inline"

    def __init__(self):
        self.sent: list[tuple[str, int]] = []

    def _send(self, stage: str, job_id: int, delay: float) -> None:
        self.sent.append((stage, job_id))


#: Engine name -> its package under tasks/ (each has ``queue.make_queue(cfg)`` and ``consumer.run_worker(cfg)``).
ENGINES = {"huey": "tasks.huey_engine", "dramatiq": "tasks.dramatiq_engine"}


def _engine(cfg: Config, module: str):
    return importlib.import_module(f"{ENGINES[cfg['runtime.queue.backend']]}.{module}")


def load_queue(cfg: Config) -> Queue:
    """The configured engine's Queue on this config's store (imported lazily: the core never imports an engine)."""
    return _engine(cfg, "queue").make_queue(cfg)


def run_worker(cfg: Config, workers: int | None = None) -> None:
    """Run the configured engine's consumer for this config in the foreground."""
    _engine(cfg, "consumer").run_worker(cfg, workers=workers)
