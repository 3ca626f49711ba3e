"""The job state machine as a table, on a real SQLite file: every (from, to) pair of JobStatus either moves the
job (and writes its timeline entry) exactly where the table allows it, or raises IllegalTransition and changes
nothing; then the lease rules (claim, release, renew, expire) and cancel_unleased."""

from __future__ import annotations

import itertools
import time

import pytest

from alter0 import jobstate
from alter0.errors import IllegalTransition
from alter0.models import Job, JobEvent, JobStatus as S
from support.helpers import open_cfg

#: The allowed moves, written out once more by hand: row = from, column = to, x = allowed.
TABLE = """
             queued routing generating closing done failed cancelled timed_out
queued         .       x        .        .     .     x        x         x
routing        .       .        x        .     .     x        x         x
generating     .       .        .        x     .     x        x         x
closing        .       .        .        .     x     x        x         x
done           .       .        .        .     .     .        .         .
failed         x       .        x        x     .     .        .         .
cancelled      x       .        x        x     .     .        .         .
timed_out      x       .        x        x     .     .        .         .
"""


def parse(table: str) -> dict[S, frozenset[S]]:
    header, *rows = [line.split() for line in table.strip().splitlines()]
    return {S(row[0]): frozenset(S(to) for to, mark in zip(header, row[1:]) if mark == "x") for row in rows}


EXPECTED = parse(TABLE)
PAIRS = list(itertools.product(S, S))
RETRIED_TO = (S.QUEUED, S.GENERATING, S.CLOSING)


@pytest.fixture(autouse=True)
def database(tmp_path):
    """A migrated SQLite database file of a temp install, bound in this process."""
    open_cfg(tmp_path)


def new_job(status: S = S.QUEUED, **fields) -> int:
    return jobstate.create(content="state machine", user_id="u", scope="user:u", status=status.value, **fields).id


def timeline(job_id: int) -> list[tuple[str, dict | None]]:
    return [(e.kind, e.data) for e in JobEvent.select().where(JobEvent.job == job_id).order_by(JobEvent.id)]


def test_the_table_is_the_state_machine():
    assert set(EXPECTED) == set(S) == set(jobstate.ALLOWED)
    assert jobstate.ALLOWED == EXPECTED
    assert all(s not in jobstate.ALLOWED[s] for s in S)  # no move to where it is


@pytest.mark.parametrize("src, dst", PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair_moves_exactly_where_allowed(src, dst):
    # Given a job in src (a finished one with an error, a cancel flag and an end time)
    ended = {"finished_at": 1.0, "error": "boom", "error_kind": "exit_error", "cancel_requested": True}
    job_id = new_job(src, parked=True, **(ended if src in jobstate.RETRYABLE_END else {}))
    before, events = Job.get_by_id(job_id), timeline(job_id)
    if dst not in EXPECTED[src]:
        # Then the move is refused, and nothing changes
        with pytest.raises(IllegalTransition, match=f"from {src.value} to {dst.value}"):
            jobstate.transition(job_id, src, dst)
        after = Job.get_by_id(job_id)
        assert after.__data__ == before.__data__ and timeline(job_id) == events
        return
    # When it moves
    started = time.time()
    assert jobstate.transition(job_id, src, dst, events=[("note", "route", {"n": 1})]) is True
    job = Job.get_by_id(job_id)
    # Then the row is in dst, stamped, unparked, and the timeline has the move then the extra event
    assert job.status == dst.value and not job.parked and job.updated_at >= started
    if dst in jobstate.TIME_FIELD:
        assert getattr(job, jobstate.TIME_FIELD[dst]) >= started
    assert timeline(job_id) == [*events, ("state", {"from": src.value, "to": dst.value}), ("note", {"n": 1})]
    if src in jobstate.RETRYABLE_END and dst in RETRIED_TO:  # a retry starts clean
        assert (job.finished_at, job.error, job.error_kind, job.cancel_requested) == (None, None, None, False)
    # And the same move again finds the job no longer in src: no change, no event
    if src != dst:
        assert jobstate.transition(job_id, src, dst) is False
        assert len(timeline(job_id)) == len(events) + 2


def test_a_lease_holder_moves_the_job_and_others_cannot():
    job_id = new_job(S.QUEUED)
    assert jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30, to=S.ROUTING)
    assert not jobstate.transition(job_id, S.ROUTING, S.GENERATING, owner="w2#1")  # not its lease
    assert Job.get_by_id(job_id).status == "routing"
    assert jobstate.transition(job_id, S.ROUTING, S.GENERATING, owner="w1#1")
    job = Job.get_by_id(job_id)
    assert job.status == "generating" and job.lease_owner is None and job.lease_expires is None  # next stage: free


def test_a_move_within_one_stage_keeps_the_lease():
    job_id = new_job(S.QUEUED)
    assert jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30)
    assert jobstate.transition(job_id, S.QUEUED, S.ROUTING, owner="w1#1")  # route's two states
    assert Job.get_by_id(job_id).lease_owner == "w1#1"


def test_claim_takes_a_free_or_expired_lease_only():
    job_id = new_job(S.QUEUED, parked=True)
    started = time.time()
    # a free job in the asked status: taken, with its expiry, unparked, the stage start stamped
    assert jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30, route_attempts=1)
    job = Job.get_by_id(job_id)
    assert job.lease_owner == "w1#1" and started + 30 <= job.lease_expires <= time.time() + 30
    assert not job.parked and job.stage_started_at >= started and job.route_attempts == 1
    assert jobstate.held_by(job_id, "w1#1") and not jobstate.held_by(job_id, "w2#1")
    # a live lease of another worker: refused; the wrong status: refused
    assert not jobstate.claim(job_id, S.QUEUED, "w2#1", lease_sec=30)
    assert not jobstate.claim(job_id, S.GENERATING, "w1#1", lease_sec=30)
    # once expired (its worker is gone), another worker takes it
    assert jobstate.expire_leases("w1") == 1
    assert jobstate.claim(job_id, S.QUEUED, "w2#1", lease_sec=30)
    assert Job.get_by_id(job_id).lease_owner == "w2#1"


def test_claim_with_a_move_records_it_and_refuses_an_illegal_one():
    job_id = new_job(S.QUEUED)
    with pytest.raises(IllegalTransition):
        jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30, to=S.CLOSING)
    assert Job.get_by_id(job_id).lease_owner is None
    assert jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30, to=S.ROUTING, events=[("start", "route", None)])
    assert Job.get_by_id(job_id).routing_at is not None
    assert timeline(job_id)[-2:] == [("state", {"from": "queued", "to": "routing"}), ("start", None)]


def test_release_gives_back_only_the_holders_lease():
    job_id = new_job(S.QUEUED)
    assert jobstate.claim(job_id, S.QUEUED, "w1#1", lease_sec=30)
    jobstate.release(job_id, "w2#1")
    assert Job.get_by_id(job_id).lease_owner == "w1#1"
    jobstate.release(job_id, "w1#1")
    job = Job.get_by_id(job_id)
    assert job.lease_owner is None and job.lease_expires is None


def test_renew_extends_this_workers_leases_on_the_given_jobs():
    mine, also_mine, not_listed, theirs = (new_job(S.QUEUED) for _ in range(4))
    for job_id, token in ((mine, "w1#1"), (also_mine, "w1#2"), (not_listed, "w1#3"), (theirs, "w10#1")):
        assert jobstate.claim(job_id, S.QUEUED, token, lease_sec=5)
    before = {j.id: j.lease_expires for j in Job.select()}
    jobstate.renew("w1", [mine, also_mine, theirs], lease_sec=300)
    after = {j.id: j.lease_expires for j in Job.select()}
    assert after[mine] > before[mine] + 200 and after[also_mine] > before[also_mine] + 200
    assert after[not_listed] == before[not_listed]  # not in the list
    assert after[theirs] == before[theirs]  # "w10#" is not "w1#"
    jobstate.renew("w1", [], lease_sec=300)  # nothing to renew: no statement, no error


def test_cancel_unleased_cancels_a_job_nobody_runs():
    job_id = new_job(S.GENERATING, parked=True)
    assert jobstate.cancel_unleased(Job.get_by_id(job_id))
    job = Job.get_by_id(job_id)
    assert (job.status, job.error_kind, job.error, job.parked) == ("cancelled", "cancelled", "cancelled by request",
                                                                    False)
    assert job.finished_at is not None
    assert timeline(job_id)[-1] == ("state", {"from": "generating", "to": "cancelled"})


def test_cancel_unleased_leaves_a_running_job_to_its_worker():
    job_id = new_job(S.GENERATING)
    assert jobstate.claim(job_id, S.GENERATING, "w1#1", lease_sec=30)
    events = timeline(job_id)
    assert not jobstate.cancel_unleased(Job.get_by_id(job_id))
    assert Job.get_by_id(job_id).status == "generating" and timeline(job_id) == events
    # its worker died: the expired lease no longer protects it
    jobstate.expire_leases("w1")
    assert jobstate.cancel_unleased(Job.get_by_id(job_id))
    assert Job.get_by_id(job_id).status == "cancelled"


def test_cancel_unleased_of_a_job_that_moved_meanwhile_does_nothing():
    job_id = new_job(S.QUEUED)
    seen = Job.get_by_id(job_id)  # read as queued ...
    assert jobstate.transition(job_id, S.QUEUED, S.ROUTING)  # ... then it moved on
    assert not jobstate.cancel_unleased(seen)
    assert Job.get_by_id(job_id).status == "routing"


@pytest.mark.parametrize("status", [S.DONE, S.FAILED, S.CANCELLED, S.TIMED_OUT])
def test_cancel_unleased_of_a_finished_job_is_illegal(status):
    job_id = new_job(status)
    with pytest.raises(IllegalTransition):
        jobstate.cancel_unleased(Job.get_by_id(job_id))
    assert Job.get_by_id(job_id).status == status.value
