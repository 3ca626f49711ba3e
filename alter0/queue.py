"""The queue-engine contract the stages use to hand work on; engines live in tasks/ (Huey, Dramatiq)."""

from __future__ import annotations

import importlib
import logging

from .config import Config
from .models import Job, now

log = logging.getLogger(__name__)
STAGES = ("route", "generate", "close")


class Queue:
    """Puts one stage of one job on a queue. Engines implement ``_send``."""

    name = "base"

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
            Job.update(dispatched_at=now(), parked=False).where(Job.id == job_id).execute()
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


class InlineQueue(Queue):
    """Records what would be queued; used to run stages in-process (replays, tools)."""

    name = "inline"

    def __init__(self):
        self.sent: list[tuple[str, int]] = []

    def _send(self, stage: str, job_id: int, delay: float) -> None:
        self.sent.append((stage, job_id))


ENGINES = {"huey": "tasks.huey_queue", "dramatiq": "tasks.dramatiq_queue"}


def load_queue(cfg: Config) -> Queue:
    """The configured engine's Queue (imported lazily so the core never imports an engine)."""
    module = importlib.import_module(ENGINES[cfg["runtime.queue.backend"]])
    return module.make_queue(cfg)
