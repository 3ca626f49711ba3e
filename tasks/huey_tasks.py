"""The three stages as separate Huey tasks, plus the worker's supervisor hooks. Thin: all logic is in alter0."""

import logging
import threading

from alter0 import stages
from alter0.runtime import get_runtime
from alter0.worker import Supervisor

from .huey_app import huey

log = logging.getLogger("alter0.worker")
_supervisor = None
_lock = threading.Lock()


@huey.task(priority=10, name="alter0.route")
def route(job_id):
    stages.run_stage(get_runtime(), "route", job_id)


@huey.task(priority=0, name="alter0.generate")
def generate(job_id):
    stages.run_stage(get_runtime(), "generate", job_id)


@huey.task(priority=10, name="alter0.close")
def close(job_id):
    stages.run_stage(get_runtime(), "close", job_id)


STAGE_TASKS = {"route": route, "generate": generate, "close": close}


@huey.on_startup()
def start_supervisor():
    """Once per consumer process: heartbeats, cancels, reclaim of what a crashed worker left."""
    global _supervisor
    with _lock:
        if _supervisor is None:
            _supervisor = Supervisor(get_runtime())
            _supervisor.start()


@huey.on_shutdown()
def stop_supervisor():
    with _lock:
        if _supervisor is not None and not _supervisor.stop_event.is_set():
            rt = get_runtime()
            _supervisor.stop(rt.cfg["runtime.shutdown.drain_timeout_sec"])
