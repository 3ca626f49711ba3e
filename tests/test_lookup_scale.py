"""The hot path's lookups read what they need, not the history: the work SQLite does for them (counted in VM
steps, not timed) stays the same whether the database holds ten rows of other scopes and finished jobs or a
thousand. Each test fails on the single-column indexes these replaced (migration v9)."""

import pytest

from alter0 import candidates, taskstate, turns
from alter0.database import write_tx
from alter0.models import Job, JobStatus as S, db, now


@pytest.fixture
def rt(stub_runtime):
    return stub_runtime(executor__command=["cat"])


def vm_steps(lookup):
    """(result, SQLite VM steps) of ``lookup()`` on this thread's connection."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0
    conn = db.obj.connection()
    conn.set_progress_handler(count, 1)
    try:
        return lookup(), steps[0]
    finally:
        conn.set_progress_handler(None, 1)


def add_tasks(n, scope=None):
    with write_tx():
        for i in range(n):
            taskstate.create(scope or f"user:other-{i}", "someone", "", f"a task number {i}", "command")


def add_jobs(n, scope, status):
    t = now()
    with write_tx():
        Job.insert_many([{"status": status.value, "content": f"message {i}", "user_id": "u", "scope": scope,
                          "created_at": t, "updated_at": t} for i in range(n)]).execute()
    return Job.select(Job.id).order_by(Job.id.desc()).first().id


def test_a_scopes_candidates_are_found_without_reading_other_scopes_open_tasks(rt):
    """Through the status index, every open task of every scope was read for each routed message."""
    add_tasks(3, "user:mine")
    add_tasks(10)
    few = vm_steps(lambda: candidates.candidates(rt.cfg, "user:mine"))
    add_tasks(1000)
    many = vm_steps(lambda: candidates.candidates(rt.cfg, "user:mine"))
    assert len(few[0]) == len(many[0]) == 3
    assert many[1] < few[1] * 1.5, (few[1], many[1])


def test_an_earlier_job_still_routing_is_found_without_reading_the_scopes_history(rt):
    """Through the scope index, a message of a user with a long history read all of it to learn that no
    earlier message of theirs was still routing."""
    add_jobs(10, "user:long", S.DONE)
    first = Job.get_by_id(add_jobs(1, "user:long", S.QUEUED))
    few = vm_steps(lambda: turns.earlier_blocker(first, "route"))
    with write_tx():
        Job.update(status=S.DONE.value).where(Job.id == first.id).execute()
    add_jobs(1000, "user:long", S.DONE)
    last = Job.get_by_id(add_jobs(1, "user:long", S.QUEUED))
    many = vm_steps(lambda: turns.earlier_blocker(last, "route"))
    assert few[0] is None and many[0] is None
    assert many[1] < few[1] * 1.5, (few[1], many[1])
    later = Job.get_by_id(add_jobs(1, "user:long", S.QUEUED))
    assert turns.earlier_blocker(later, "route").id == last.id  # and one still routing is found
