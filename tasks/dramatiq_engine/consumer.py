"""``alter0 worker`` on Dramatiq: the binding's worker threads in this process, drained on SIGTERM/SIGINT."""

import logging
import signal
import threading

import dramatiq

from alter0.errors import Alter0Error

from .app import binding_for

log = logging.getLogger("alter0.supervisor")
#: Longest idle poll of Redis, in milliseconds (also how long a worker thread waits for work).
POLL_MS = 100


def run_worker(cfg, workers=None):
    """Run ``runtime.queue.workers`` Dramatiq threads in the foreground until SIGTERM or SIGINT."""
    binding = binding_for(cfg)
    threads = workers or cfg["runtime.queue.workers"]
    worker = dramatiq.Worker(binding.broker, worker_threads=threads, worker_timeout=POLL_MS)
    worker.queue_prefetch = threads  # hold little beyond what runs: a killed worker strands less
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    worker.start()  # boots the SupervisorMiddleware: heartbeats, cancels, reclaim
    supervisor = binding.supervision.supervisor
    if supervisor is None or not supervisor.thread.is_alive():  # Dramatiq logs a failing boot hook and goes on
        worker.stop(timeout=5000)
        raise Alter0Error("the worker's supervisor did not start (is the database reachable?); see the log above")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping: draining in-flight stages")
        worker.stop(timeout=int((cfg["runtime.shutdown.drain_timeout_sec"] + 10) * 1000))
        binding.broker.close()
