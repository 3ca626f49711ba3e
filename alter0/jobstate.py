"""The only writer of Job rows: the state machine (every status change goes through ``transition``), leases
(who runs a stage), dispatch and park marks, cancel flags, per-stage counters and results."""

from __future__ import annotations

from typing import Sequence

from .clock import db_now
from .errors import IllegalTransition
from .models import ACTIVE, STAGE_OF_STATE, Job, JobEvent, JobStatus as S, now
from .prepared import Prepared, create as create_row, insert, update

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


def transition(job_id: int, src: S, dst: S, *, owner: str | None = None,
               events: Sequence[tuple[str, str | None, dict | None]] = (), **fields) -> bool:
    """Move a job from ``src`` to ``dst`` if it is still in ``src`` (and, with ``owner``, still leased by it).

    The timeline gets the state change and then ``events`` (kind, stage, data), in one statement.
    Returns False when someone else moved it first; raises IllegalTransition for a move the machine forbids.
    """
    values, event = _state_change(src, dst, now())
    values.update(parked=False, **fields)
    if dst in (S.QUEUED, S.GENERATING, S.CLOSING) and src in RETRYABLE_END:
        values.update(finished_at=None, error=None, error_kind=None, cancel_requested=False)
    if owner is not None and STAGE_OF_STATE.get(src) != STAGE_OF_STATE.get(dst):
        values.update(lease_owner=None, lease_expires=None)  # a lease is per stage: the next one may claim at once
    where = {"id": job_id, "status": src.value} if owner is None else \
        {"id": job_id, "status": src.value, "lease_owner": owner}
    if update(Job, values, where) != 1:
        return False
    add_events(job_id, [event, *events])
    return True


def _state_change(src: S, dst: S, t: float) -> tuple[dict, tuple[str, None, dict]]:
    """The columns a move from ``src`` to ``dst`` at ``t`` writes, and its timeline entry (checked first)."""
    check(src, dst)
    values = {"status": dst.value, "updated_at": t}
    if dst in TIME_FIELD:
        values[TIME_FIELD[dst]] = t
    return values, ("state", None, {"from": src.value, "to": dst.value})


_job_by_id = Prepared(lambda job_id: Job.select().where(Job.id == job_id))


def job_by_id(job_id: int) -> Job | None:
    """The job with this id, or None (the hot path: every stage run and every poll of a job)."""
    return _job_by_id.first(job_id)


def add_event(job_id: int, kind: str, stage: str | None = None, data: dict | None = None) -> None:
    """Append one entry to a job's timeline."""
    insert(JobEvent, job=job_id, kind=kind, stage=stage, data=data)


_EVENT_ROWS: dict[int, Prepared] = {}


def _events_insert(n: int) -> Prepared:
    """The INSERT of ``n`` timeline rows (job, kind, stage, data, created_at), written once per ``n``."""
    prepared = _EVENT_ROWS.get(n)
    if prepared is None:
        columns = (JobEvent.job, JobEvent.kind, JobEvent.stage, JobEvent.data, JobEvent.created_at)
        prepared = Prepared(lambda *args: JobEvent.insert_many(
            [dict(zip(columns, args[i:i + 5])) for i in range(0, len(args), 5)]).as_rowcount())
        prepared.arity = 5 * n
        _EVENT_ROWS[n] = prepared
    return prepared


def add_events(job_id: int, events: Sequence[tuple[str, str | None, dict | None]]) -> None:
    """Append entries (kind, stage, data) to a job's timeline in one statement, in this order."""
    if events:
        t, to_json = now(), JobEvent.data.db_value
        _events_insert(len(events)).execute(*(x for kind, stage, data in events
                                              for x in (job_id, kind, stage, to_json(data), t)))


_CLAIMS: dict[tuple, Prepared] = {}


def _claim_update(names: tuple[str, ...], count: str | None) -> Prepared:
    """UPDATE job SET <names> [, <count>_attempts + 1] WHERE id, status and no live lease: once per shape."""
    key = (names, count)
    prepared = _CLAIMS.get(key)
    if prepared is None:
        fields = [Job._meta.fields[n] for n in names]
        counter = getattr(Job, f"{count}_attempts") if count else None

        def build(*args):
            sets = dict(zip(fields, args))
            if counter is not None:
                sets[counter] = counter + 1
            job_id, status, t = args[len(fields):]
            return Job.update(sets).where((Job.id == job_id) & (Job.status == status) &
                                          (Job.lease_owner.is_null() | (Job.lease_expires < t)))
        prepared = _CLAIMS[key] = Prepared(build)
        prepared.arity = len(fields) + 3
    return prepared


def claim(job_id: int, status: S, owner: str, lease_sec: float, *, to: S | None = None, count: str | None = None,
          events: Sequence[tuple[str, str | None, dict | None]] = (), **fields) -> bool:
    """Take the lease on a job in ``status`` unless a live lease of another worker holds it.

    The same statement moves the job on to ``to`` (if given; the state change is recorded), counts an attempt
    of stage ``count`` (if given) and writes ``fields``; ``events`` follow on the timeline."""
    t = db_now()
    values = {"lease_owner": owner, "lease_expires": t + lease_sec, "parked": False, "stage_started_at": t, **fields}
    if to is not None:
        moved, event = _state_change(status, to, t)
        values.update(moved)
        events = [event, *events]
    names = tuple(values)
    args = [Job._meta.fields[n].db_value(v) for n, v in values.items()]
    if _claim_update(names, count).execute(*args, job_id, status.value, t) != 1:
        return False
    add_events(job_id, events)
    return True


def release(job_id: int, owner: str) -> None:
    """Give a lease back."""
    update(Job, {"lease_owner": None, "lease_expires": None}, {"id": job_id, "lease_owner": owner})


def renew(owner: str, job_ids: list[int], lease_sec: float) -> None:
    """Extend the leases a worker (``owner``, the prefix of its lease tokens) holds on these jobs."""
    if job_ids:
        Job.update(lease_expires=db_now() + lease_sec).where(
            (Job.id.in_(job_ids)) & Job.lease_owner.startswith(owner + "#")).execute()


# --- creation, dispatch and parking ---------------------------------------------------------------

def create(**fields) -> Job:
    """Insert a new queued job (inside the caller's transaction) with its "submitted" event."""
    job = create_row(Job, **fields)
    add_event(job.id, "submitted", None, {"task_id": fields.get("requested_task_id")})
    return job


def collect_into(job_id: int, extra: str) -> bool:
    """Append a message to a job still waiting for its generation turn (task.busy_policy = collect); False if it
    has started meanwhile (inside the caller's transaction)."""
    done = Job.update(content=Job.content.concat(extra), updated_at=now()).where(
        (Job.id == job_id) & (Job.status == S.GENERATING.value) & Job.lease_owner.is_null(True)).execute()
    if done:
        add_event(job_id, "collected", "generate", {"chars": len(extra)})
    return done == 1


def task_of(job_id: int) -> int | None:
    """The task a job was routed to, or None."""
    return Job.select(Job.task).where(Job.id == job_id).scalar()


def mark_dispatched(job_id: int) -> None:
    """A stage message for this job is on its way now (it is no longer parked)."""
    update(Job, {"dispatched_at": db_now(), "parked": False}, {"id": job_id})


def redispatch(job_id: int, status: str, seen: float | None) -> bool:
    """Record a re-send of a job's lost message if nobody sent, took or parked it since ``seen`` (its
    ``dispatched_at`` as read): of several sweeping workers only one re-sends."""
    last = Job.dispatched_at.is_null() if seen is None else (Job.dispatched_at == seen)
    return Job.update(dispatched_at=db_now()).where(
        (Job.id == job_id) & (Job.status == status) & last & Job.lease_owner.is_null() & ~Job.parked
    ).execute() == 1


def mark_undispatched(job_id: int) -> None:
    """The job's message left the queue without running: the reclaim sweep re-sends it."""
    update(Job, {"dispatched_at": None}, {"id": job_id})


def park(job_id: int) -> None:
    """The job waits for its turn holding no queue message; the job ahead hands the turn on."""
    update(Job, {"parked": True}, {"id": job_id})


def count_attempt(job_id: int, stage: str) -> None:
    """One more attempt of ``stage`` (the stage's start counted the first)."""
    update(Job, {}, {"id": job_id}, add={f"{stage}_attempts": 1})


def set_executor_pgid(job_id: int, pgid: int | None) -> None:
    """Record (or clear) the process group of the job's running executor."""
    update(Job, {"executor_pgid": pgid}, {"id": job_id})


# --- workers that stop or die ---------------------------------------------------------------------

def expire_leases(worker_id: str) -> int:
    """Let every lease of this worker (its tokens start with ``worker_id#``) expire now; how many there were."""
    return Job.update(lease_expires=0).where(Job.lease_owner.startswith(worker_id + "#")).execute()


def mark_lost(sent_before: float) -> int:
    """Messages a dead worker may have taken off the queue but not started: unleased, unparked jobs whose last
    message went out before ``sent_before`` are marked undispatched, so reclaim re-sends them."""
    return Job.update(dispatched_at=None).where(
        Job.status.in_(ACTIVE) & Job.lease_owner.is_null() & ~Job.parked &
        (Job.dispatched_at <= sent_before)).execute()


def leased_executors(worker_id: str) -> list[tuple[int, int]]:
    """(job id, executor process group) of the running executors under this worker's leases."""
    return list(Job.select(Job.id, Job.executor_pgid).where(
        Job.lease_owner.startswith(worker_id + "#") & Job.executor_pgid.is_null(False)).tuples())


# --- cancel -----------------------------------------------------------------------------------------

def request_cancel(job_id: int) -> None:
    """Flag the job for cancellation; the worker holding its lease kills the run."""
    Job.update(cancel_requested=True).where(Job.id == job_id).execute()


def cancel_unleased(job: Job) -> bool:
    """Cancel a job nobody runs (no lease, or an expired one) at once; False if it moved or got leased."""
    t = db_now()
    values, event = _state_change(job.state, S.CANCELLED, t)
    values.update(error_kind="cancelled", error="cancelled by request", parked=False)
    moved = Job.update(**values).where(
        (Job.id == job.id) & (Job.status == job.status) &
        (Job.lease_owner.is_null() | (Job.lease_expires < t))).execute()
    if moved == 1:
        add_events(job.id, [event])
        return True
    return False


def held_by(job_id: int, owner: str) -> bool:
    """Whether ``owner`` still holds the job's lease."""
    return _HELD.first(job_id, owner) is not None


_HELD = Prepared(lambda job_id, owner: Job.select(Job.id).where((Job.id == job_id) & (Job.lease_owner == owner)))
