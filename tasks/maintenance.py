"""Huey periodic maintenance: retention of task memory and of logs, hourly. Thin: the logic is in alter0.ops."""

import time

from huey import crontab

from alter0.ops.retention import LOGS_JOB, MEMORY_JOB, purge_logs, purge_memory, tracked
from alter0.runtime import get_runtime

from .huey_app import huey

#: When each job runs (UTC): hourly, at minute 7 and minute 37.
MEMORY_SCHEDULE = crontab(minute="7")
LOGS_SCHEDULE = crontab(minute="37")


@huey.periodic_task(MEMORY_SCHEDULE, name="alter0.memory_retention")
def memory_retention():
    """Forget the memory of tasks past runtime.maintenance.task_memory_*retention_days."""
    cfg = get_runtime().cfg
    with tracked(MEMORY_JOB):
        return purge_memory(cfg, time.time())


@huey.periodic_task(LOGS_SCHEDULE, name="alter0.log_retention")
def log_retention():
    """Delete stage, audit and process logs past runtime.maintenance.log_retention_days."""
    cfg = get_runtime().cfg
    with tracked(LOGS_JOB):
        return purge_logs(cfg, time.time())
