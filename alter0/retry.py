"""Per-stage retry policies driven by tenacity; a retry waits on the job's cancel event, never blindly."""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from peewee import OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from . import jobstate
from .config import stage_retry_policy
from .errors import ExecutorError, never_retried

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_retryable(exc: BaseException, retry_on: set[str]) -> bool:
    """Whether this stage's policy retries this error."""
    if isinstance(exc, OperationalError):  # database busy or briefly unreachable
        return True
    return isinstance(exc, ExecutorError) and exc.kind in retry_on and not never_retried(exc.kind)


def run_with_retry(rt, stage: str, job, fn: Callable[[], T], cancel: threading.Event) -> T:
    """Call ``fn`` under the stage's tenacity policy, recording each retry on the job's timeline."""
    policy = stage_retry_policy(rt.cfg, stage)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        delay = state.next_action.sleep if state.next_action else 0
        kind = getattr(exc, "kind", type(exc).__name__)
        jobstate.add_event(job.id, "retry", stage, {"attempt": state.attempt_number, "kind": kind,
                                                     "message": str(exc)[:500], "delay": round(delay, 3)})
        log.info("job %s %s attempt %s failed (%s), retrying in %.2fs", job.id, stage, state.attempt_number,
                 kind, delay, extra={"job_id": job.id, "stage": stage})

    def sleep(seconds: float) -> None:
        if cancel.wait(seconds):
            raise ExecutorError("cancelled", "cancelled while waiting to retry")

    retrying = Retrying(stop=stop_after_attempt(policy["attempts"]),
                        wait=wait_exponential(multiplier=policy["delay"], min=policy["delay"],
                                              max=policy["max_delay"]),
                        retry=retry_if_exception(lambda e: is_retryable(e, policy["retry_on"])),
                        before_sleep=before_sleep, sleep=sleep, reraise=True)
    try:
        return retrying(fn)
    except OperationalError as exc:
        raise ExecutorError("transient", f"database unavailable: {exc}") from None
