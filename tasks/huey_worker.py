"""``alter0 worker`` on Huey: a consumer with alter0's polling settings and a drain on SIGTERM/SIGINT."""

from huey.consumer import Consumer

from . import huey
from . import huey_tasks


class DrainingConsumer(Consumer):
    """Stops taking jobs, lets in-flight stages finish up to the drain timeout, leaves the rest for reclaim."""

    def stop(self, graceful=False):
        from alter0.runtime import get_runtime
        if huey_tasks._supervisor is not None:
            huey_tasks._supervisor.stop(get_runtime().cfg["runtime.shutdown.drain_timeout_sec"])
        super().stop(graceful=graceful)


def run_worker(cfg, workers=None):
    """Run the consumer in the foreground until a signal stops it."""
    import os, sys
    sys.setswitchinterval(float(os.environ.get("EXP_SWITCH", "0.005")))
    consumer = DrainingConsumer(
        huey, workers=workers or cfg["runtime.queue.workers"], worker_type="thread", periodic=True,
        initial_delay=0.02, backoff=1.1, max_delay=0.25, scheduler_interval=1, check_worker_health=True,
        health_check_interval=5, shutdown_timeout=cfg["runtime.shutdown.drain_timeout_sec"] + 10,
        graceful_signal="TERM")
    consumer.run()
