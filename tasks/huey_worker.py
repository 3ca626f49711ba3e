"""``alter0 worker`` on Huey: a consumer with alter0's polling settings and a drain on SIGTERM/SIGINT."""

from huey.consumer import Consumer, Worker

from . import huey
from . import huey_tasks
from .huey_doorbell import doorbell_for

doorbell = doorbell_for(huey.storage.filename)


class RungWorker(Worker):
    """A consumer thread that sleeps between polls until its doorbell rings (tasks.huey_doorbell)."""

    def sleep(self):
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if doorbell.wait(self.delay):
            self.delay = self.default_delay  # rung: a message is waiting, poll at once
        else:
            self.delay *= self.backoff


class DrainingConsumer(Consumer):
    """Stops taking jobs, lets in-flight stages finish up to the drain timeout, leaves the rest for reclaim;
    its threads wake when a stage is queued on this host (doorbell) and poll in between."""

    worker_class = RungWorker

    def run(self):
        doorbell.listen()
        try:
            super().run()
        finally:
            doorbell.close()

    def stop(self, graceful=False):
        from alter0.runtime import get_runtime
        if huey_tasks._supervisor is not None:
            huey_tasks._supervisor.stop(get_runtime().cfg["runtime.shutdown.drain_timeout_sec"])
        self.stop_flag.set()
        doorbell.wake_all()  # sleeping threads see the stop flag now, not at their next poll
        super().stop(graceful=graceful)


def run_worker(cfg, workers=None):
    """Run the consumer in the foreground until a signal stops it."""
    consumer = DrainingConsumer(
        huey, workers=workers or cfg["runtime.queue.workers"], worker_type="thread", periodic=True,
        initial_delay=0.02, backoff=1.1, max_delay=0.25, scheduler_interval=1, check_worker_health=True,
        health_check_interval=5, shutdown_timeout=cfg["runtime.shutdown.drain_timeout_sec"] + 10,
        graceful_signal="TERM")
    consumer.run()
