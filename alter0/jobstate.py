"""The job state machine: every status change goes through ``transition``; leases say who runs a stage."""

from __future__ import annotations

from .errors import IllegalTransition, NotFound
from .models import STAGE_OF_STATE, Job, JobEvent, JobStatus as S, now

RETRYABLE_END = (S.FAILED, S.CANCELLED, S.TIMED_OUT)
ALLOWED: dict[S, frozenset[S]] = {
    S.QUEUED: frozenset({S.ROUTING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.ROUTING: frozenset({S.GENERATING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.GENERATING: frozenset({S.CLOSING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.CLOSING: frozenset({S.DONE, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.DONE: frozenset(),
    S.FAILED: frozenset({S.QUEUED, S.GENERATING, S.CLOSING}),
    S.CANCELLED: frozenset({S.QUEUED, S.GENERATING, S.CLOSING}),
    S.TIMED_OUT: frozenset({S.QUEUED, S.GENERATING, S.CLOSING}),
}
TIME_FIELD = {S.ROUTING: "routing_at", S.GENERATING: "generating_at", S.CLOSING: "closing_at",
              S.DONE: "finished_at", S.FAILED: "finished_at", S.CANCELLED: "finished_at",
              S.TIMED_OUT: "finished_at"}


def check(src: S, dst: S) -> None:
    """Raise IllegalTransition unless the state machine allows src -> dst."""
    if dst not in ALLOWED[src]:
        raise IllegalTransition(f"job cannot go from {src.value} to {dst.value}")


def transition(job_id: int, src: S, dst: S, *, owner: str | None = None, **fields) -> bool:
    """Move a job from ``src`` to ``dst`` if it is still in ``src`` (and, with ``owner``, still leased by it).

    Returns False when someone else moved it first; raises IllegalTransition for a move the machine forbids.
    """
    check(src, dst)
    t = now()
    values = {"status": dst.value, "updated_at": t, "parked": False, **fields}
    if dst in TIME_FIELD:
        values[TIME_FIELD[dst]] = t
    if dst in (S.QUEUED, S.GENERATING, S.CLOSING) and src in RETRYABLE_END:
        values.update(finished_at=None, error=None, error_kind=None, cancel_requested=False)
    if owner is not None and STAGE_OF_STATE.get(src) != STAGE_OF_STATE.get(dst):
        values.update(lease_owner=None, lease_expires=None)  # a lease is per stage: the next one may claim at once
    query = Job.update(**values).where((Job.id == job_id) & (Job.status == src.value))
    if owner is not None:
        query = query.where(Job.lease_owner == owner)
    if query.execute() != 1:
        return False
    add_event(job_id, "state", None, {"from": src.value, "to": dst.value})
    return True


def add_event(job_id: int, kind: str, stage: str | None = None, data: dict | None = None) -> None:
    """Append one entry to a job's timeline."""
    JobEvent.create(job=job_id, kind=kind, stage=stage, data=data)


def get_job(job_id) -> Job:
    """The job with this id, or NotFound."""
    try:
        job_id = int(job_id)
    except (TypeError, ValueError):
        raise NotFound(f"job {job_id!r} does not exist (job ids are integers)") from None
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def claim(job_id: int, status: S, owner: str, lease_sec: float) -> bool:
    """Take the lease on a job in ``status`` unless a live lease of another worker holds it."""
    t = now()
    free = Job.lease_owner.is_null() | (Job.lease_expires < t)
    return Job.update(lease_owner=owner, lease_expires=t + lease_sec, parked=False, stage_started_at=t).where(
        (Job.id == job_id) & (Job.status == status.value) & free).execute() == 1


def release(job_id: int, owner: str) -> None:
    """Give a lease back."""
    Job.update(lease_owner=None, lease_expires=None).where(
        (Job.id == job_id) & (Job.lease_owner == owner)).execute()


def renew(owner: str, job_ids: list[int], lease_sec: float) -> None:
    """Extend the leases a worker (``owner``, the prefix of its lease tokens) holds on these jobs."""
    if job_ids:
        Job.update(lease_expires=now() + lease_sec).where(
            (Job.id.in_(job_ids)) & Job.lease_owner.startswith(owner + "#")).execute()
