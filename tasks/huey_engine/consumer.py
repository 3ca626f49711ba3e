"""``alter0 worker`` on Huey: a consumer with alter0's polling settings and a drain on SIGTERM/SIGINT."""

from __future__ import annotations

import logging

from huey.consumer import Consumer, Worker

from alter0.config import Config
from alter0.database import storage_error
from alter0.errors import Alter0Error, StorageUnavailable
from alter0.inflight import STAGE_TURN

from .app import HueyBinding, binding_for
from .doorbell import Doorbell, doorbell_for


class RungWorker(Worker):
    """A consumer thread that sleeps between polls until its doorbell rings (doorbell.py)."""

    doorbell: Doorbell  # set per consumer class by DrainingConsumer.for_binding
    _idle = False  # the take found nothing: sleep once the turn is given up

    def loop(self, now=None):
        """A take and the stage it took run in one stage turn (``inflight.STAGE_TURN``): the turn is not handed to
        a waiting thread between them, only to take it back (a thread switch and a GIL hand-over each time)."""
        with STAGE_TURN.held():
            super().loop(now)
        if self._idle:
            self._idle = False
            self._sleep()

    def sleep(self):
        self._idle = True  # Worker.loop sleeps inside the turn: ``loop`` sleeps after it instead

    def _sleep(self):
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if self.doorbell.wait(self.delay):
            self.delay = self.default_delay  # rung: a message is waiting, poll at once
        else:
            self.delay *= self.backoff


class DrainingConsumer(Consumer):
    """Stops taking jobs, lets in-flight stages finish up to the drain timeout, leaves the rest for reclaim;
    its threads wake when a stage is queued on this host (doorbell) and poll in between."""

    binding: HueyBinding
    doorbell: Doorbell

    @classmethod
    def for_binding(cls, binding: HueyBinding) -> type["DrainingConsumer"]:
        bell = doorbell_for(binding.huey.storage.filename)
        worker = type("RungWorker", (RungWorker,), {"doorbell": bell})
        return type("DrainingConsumer", (cls,), {"binding": binding, "doorbell": bell, "worker_class": worker})

    def run(self):
        self.doorbell.listen()
        try:
            super().run()
        finally:
            self.doorbell.close()

    def stop(self, graceful=False):
        self.binding.stop_supervisor()
        self.stop_flag.set()
        self.doorbell.wake_all()  # sleeping threads see the stop flag now, not at their next poll
        super().stop(graceful=graceful)


def consumer_options(cfg: Config, workers: int | None = None) -> dict:
    """The Consumer keyword arguments ``alter0 worker`` uses for this config."""
    return dict(workers=workers or cfg["runtime.queue.workers"], worker_type="thread", periodic=True,
                initial_delay=0.02, backoff=1.1, max_delay=0.25, scheduler_interval=1, check_worker_health=True,
                health_check_interval=5, shutdown_timeout=cfg["runtime.shutdown.drain_timeout_sec"] + 10,
                graceful_signal="TERM")


def quiet_task_lines() -> None:
    """Huey logs two INFO lines per task run ("Executing alter0.route: ...", "... executed in 0.003s"), six per
    message, through every handler: below DEBUG they stop at the ``huey`` logger (the stage JSONL and the job
    timeline say the same); the consumer's own lines (``huey.consumer``: start, stop) stay."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("huey").setLevel(logging.WARNING)
        logging.getLogger("huey.consumer").setLevel(logging.INFO)


def run_worker(cfg: Config, workers: int | None = None) -> None:
    """Run the consumer of this config's queue in the foreground until a signal stops it."""
    quiet_task_lines()
    binding = binding_for(cfg)
    try:  # before any thread takes a message: a worker never runs without its supervisor
        binding.start_supervisor()
    except Exception as exc:
        known = storage_error(exc)
        raise StorageUnavailable(f"the supervisor could not start: {known.message}") if known else \
            Alter0Error(f"the supervisor could not start: {exc!r}; the worker does not run without it") from exc
    consumer = DrainingConsumer.for_binding(binding)(binding.huey, **consumer_options(cfg, workers))
    consumer.run()
