"""The queue-engine contract (alter0.queue.Queue), one test class run on every engine:

- ``inline`` and ``threads``: the stub engine the in-process fixtures use (tests/support/stub_engine.py);
- ``huey``: a real SqliteHuey file and a real DrainingConsumer (alter0 worker's) on one thread of this process;
- ``dramatiq``: real Redis (the session's ``scale_services``: skipped locally, a failure in CI, when missing)
  and a real dramatiq.Worker thread of this process.

What every engine guarantees: a message of each stage reaches ``alter0.stages.run_stage`` for its job; a
message for a job that does not exist is a no-op that leaves the consumer working; ``backlog()`` counts the
messages waiting while nothing consumes; a delay is honoured; an urgent hand-off is delivered (and, on the
stub and Huey, ahead of the messages already waiting); a refused enqueue returns False and leaves the job
dispatched, so the reclaim sweep re-sends it; an unknown stage is refused before anything is written, and
a "stamped" enqueue leaves the job row to its caller.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest

from alter0 import jobstate, stages, supervisor
from alter0.config import load_config
from alter0.models import Job, JobStatus as S
from alter0.runtime import Runtime, set_runtime
from support.helpers import wait_until

ENGINES = ["inline", "threads", "huey", "dramatiq"]
#: The state a job waits in for each stage.
STATE_OF_STAGE = {"route": S.QUEUED, "generate": S.GENERATING, "close": S.CLOSING}
PATH = [S.QUEUED, S.ROUTING, S.GENERATING, S.CLOSING]
#: The install every engine runs: one consumer thread (so order is visible), fast refusals and drains, and the
#: supervisor's reclaim sweep only at the consumer's start (the test runs it itself where it is the subject).
CONFIG = {"runtime": {"queue": {"workers": 1, "enqueue_timeout_sec": 0.5, "reclaim_interval_sec": 3600},
                      "shutdown": {"drain_timeout_sec": 1}}}


class Engine:
    """One engine under test: ``rt`` (whose queue is the engine's), a consumer to start, a store to break."""

    name = "base"
    #: Whether an urgent message runs before the messages already waiting.
    urgent_first = True

    def __init__(self, rt: Runtime):
        self.rt = rt
        set_runtime(rt)  # the engines' tasks and actors run stages on the process runtime

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """Let the consumer do what it can now (the inline engine runs here, in the test's thread)."""

    def refusing(self):
        """A context in which the engine's store refuses messages."""
        raise NotImplementedError


class StubEngine(Engine):
    def __init__(self, rt: Runtime, name: str):
        super().__init__(rt)
        self.name = name
        rt.queue.pause()  # nothing consumes until start()

    def start(self) -> None:
        self.rt.queue.resume()

    def stop(self) -> None:
        self.rt.queue.close()

    def settle(self) -> None:
        if self.rt.queue.pool is None:
            self.rt.queue.join()

    @contextlib.contextmanager
    def refusing(self):
        self.rt.queue.fail = ConnectionError("the stub store is down")
        try:
            yield
        finally:
            self.rt.queue.fail = None


class HueyEngine(Engine):
    name = "huey"

    def __init__(self, cfg):
        from tasks.huey_engine.app import binding_for
        from tasks.huey_engine.queue import make_queue
        super().__init__(Runtime(cfg, make_queue(cfg)))
        self.binding = binding_for(cfg)
        self.consumer = None

    def start(self) -> None:
        from tasks.huey_engine.consumer import DrainingConsumer, consumer_options
        consumer = DrainingConsumer.for_binding(self.binding)(self.binding.huey,
                                                              **consumer_options(self.rt.cfg, workers=1))
        consumer._set_signal_handlers = lambda: None  # a thread of the test process: leave pytest's signals alone
        consumer.start()
        self.consumer = consumer

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
            self.consumer = None

    @contextlib.contextmanager
    def refusing(self):
        """Another connection holds the queue file's write lock longer than runtime.queue.enqueue_timeout_sec."""
        conn = sqlite3.connect(self.binding.huey.storage.filename, isolation_level=None, timeout=5)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()


class DramatiqEngine(Engine):
    name = "dramatiq"
    urgent_first = False  # one Redis list per queue: a hand-off is sent like any message

    def __init__(self, cfg, services):
        from tasks.dramatiq_engine.app import binding_for
        from tasks.dramatiq_engine.queue import make_queue
        super().__init__(Runtime(cfg, make_queue(cfg)))
        self.binding = binding_for(cfg)
        self.services = services
        self.worker = None

    def start(self) -> None:
        import dramatiq
        self.worker = dramatiq.Worker(self.binding.broker, worker_threads=1, worker_timeout=100)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=15_000)
            self.worker = None

    @contextlib.contextmanager
    def refusing(self):
        """Redis out of memory (maxmemory 1 byte, no eviction): it refuses every write."""
        admin = self.services.redis_client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        try:
            yield
        finally:
            admin.config_set("maxmemory", 0)
            admin.close()


@pytest.fixture(params=ENGINES)
def engine(request, make_env, stub_runtime):
    env = make_env(**CONFIG)
    if request.param in ("inline", "threads"):
        eng = StubEngine(stub_runtime(threads=1 if request.param == "threads" else 0, env=env), request.param)
    elif request.param == "huey":
        eng = HueyEngine(load_config(env.config_path, env={}))
    else:
        services = request.getfixturevalue("scale_services")
        _, redis_db = services.fresh()
        eng = DramatiqEngine(load_config(env.config_path, env={}, overrides={
            "runtime.queue.backend": "dramatiq", "runtime.queue.broker_url": services.redis_url(redis_db)}),
            services)
    yield eng
    eng.stop()
    if request.param == "dramatiq":
        eng.binding.broker.close()
    set_runtime(None)


@pytest.fixture
def calls(monkeypatch):
    """Every (stage, job id, monotonic time) handed to run_stage, by any engine, before the real run_stage runs."""
    seen: list[tuple[str, int, float]] = []
    real = stages.run_stage

    def recording(rt, stage, job_id):
        seen.append((stage, job_id, time.monotonic()))
        real(rt, stage, job_id)

    monkeypatch.setattr(stages, "run_stage", recording)
    return seen


def job_in(status: S, dispatched: bool = True) -> int:
    """A job moved through the state machine to ``status`` and flagged for cancel: its stage, when it runs,
    ends it as cancelled at once (no router, no executor), which shows run_stage ran the right stage for it.
    ``dispatched``: marked as sent, as submit does, so a consumer's start-up reclaim does not send it too."""
    job_id = jobstate.create(content="contract", user_id="u", scope="user:u").id
    for src, dst in zip(PATH, PATH[1:PATH.index(status) + 1]):
        assert jobstate.transition(job_id, src, dst)
    jobstate.request_cancel(job_id)
    if dispatched:
        jobstate.mark_dispatched(job_id)
    return job_id


def delivered(engine: Engine, calls, wanted: list[tuple[str, int]], timeout: float = 20) -> list[tuple[str, int]]:
    """Wait until each (stage, job id) of ``wanted`` reached run_stage; every (stage, job id) seen, in order."""
    def seen():
        engine.settle()
        got = [(stage, job_id) for stage, job_id, _ in calls]
        return got if all(w in got for w in wanted) else None
    return wait_until(seen, timeout, lambda: f"{engine.name} to deliver {wanted}; run_stage saw {calls}")


def ended(job_id: int, timeout: float = 20) -> str:
    """The job's status once its stage ended it."""
    return wait_until(lambda: Job.get_by_id(job_id).status == "cancelled" and "cancelled", timeout,
                      lambda: f"job {job_id} to end: {Job.get_by_id(job_id).status}")


class TestQueueContract:
    def test_each_stage_reaches_run_stage_for_its_job(self, engine, calls):
        # Given one job waiting for each stage, and a running consumer
        jobs = {stage: job_in(state) for stage, state in STATE_OF_STAGE.items()}
        engine.start()
        # When each stage is enqueued for its job
        for stage, job_id in jobs.items():
            assert engine.rt.queue.enqueue(stage, job_id) is True
        # Then run_stage got that stage for that job, and ran it (each job ended)
        got = delivered(engine, calls, list(jobs.items()))
        assert sorted(got) == sorted(jobs.items())  # each once
        assert all(ended(job_id) for job_id in jobs.values())

    def test_a_message_for_an_unknown_job_is_a_no_op(self, engine, calls):
        engine.start()
        missing = 10**9
        assert engine.rt.queue.enqueue("route", missing) is True
        delivered(engine, calls, [("route", missing)])
        assert not Job.select().where(Job.id == missing).exists()
        # and the consumer goes on with the next message
        job_id = job_in(S.QUEUED)
        assert engine.rt.queue.enqueue("route", job_id)
        delivered(engine, calls, [("route", job_id)])
        assert ended(job_id)

    def test_backlog_counts_waiting_messages_while_nothing_consumes(self, engine, calls):
        # Given no consumer, three messages
        jobs = [job_in(S.QUEUED) for _ in range(3)]
        assert engine.rt.queue.backlog() == 0
        for job_id in jobs:
            assert engine.rt.queue.enqueue("route", job_id)
        # Then they wait, counted, and none ran
        engine.settle()
        assert engine.rt.queue.backlog() == 3 and calls == []
        # When a consumer starts, they run and the backlog empties
        engine.start()
        delivered(engine, calls, [("route", job_id) for job_id in jobs])
        wait_until(lambda: engine.rt.queue.backlog() == 0, 10, "the backlog to empty")

    def test_pending_lists_the_waiting_messages_as_they_come_and_go(self, engine, calls):
        if engine.rt.queue.pending() is None:  # an engine that cannot list (the stub): the sweep's stale rule
            return
        # Given no consumer and two messages waiting
        a, b = job_in(S.QUEUED), job_in(S.QUEUED)
        assert engine.rt.queue.enqueue("route", a) and engine.rt.queue.enqueue("generate", b)
        assert engine.rt.queue.pending() == {("route", a), ("generate", b)}
        # When they are consumed and another comes (on SQLite it reuses the store row of the first)
        engine.start()
        delivered(engine, calls, [("route", a), ("generate", b)])
        wait_until(lambda: engine.rt.queue.pending() == set(), 10, "the store to empty")
        engine.stop()
        c = job_in(S.QUEUED)
        assert engine.rt.queue.enqueue("close", c)
        # Then the listing names the new message, not one remembered from the reused row
        assert engine.rt.queue.pending() == {("close", c)}

    def test_a_delay_is_honoured(self, engine, calls):
        engine.start()
        job_id = job_in(S.QUEUED)
        sent = time.monotonic()
        assert engine.rt.queue.enqueue("route", job_id, delay=1.5)
        delivered(engine, calls, [("route", job_id)], timeout=15)
        [(_, _, at)] = [c for c in calls if c[1] == job_id]
        assert at - sent >= 1.5 - 0.05, f"delivered {at - sent:.2f} s after a 1.5 s delay"
        assert ended(job_id)

    def test_an_urgent_hand_off_is_delivered(self, engine, calls):
        # Given two messages waiting (no consumer yet), then a hand-off
        waiting = [job_in(S.QUEUED) for _ in range(2)]
        for job_id in waiting:
            assert engine.rt.queue.enqueue("route", job_id)
        urgent = job_in(S.QUEUED)
        assert engine.rt.queue.enqueue("route", urgent, urgent=True)
        assert Job.get_by_id(urgent).parked is False and Job.get_by_id(urgent).dispatched_at is not None
        # When one consumer thread starts
        engine.start()
        got = delivered(engine, calls, [("route", job_id) for job_id in [*waiting, urgent]])
        # Then all run; where the engine can, the hand-off first
        if engine.urgent_first:
            assert got[0] == ("route", urgent), got
        assert ended(urgent)

    def test_a_refused_enqueue_returns_false_and_the_job_stays_recoverable(self, engine, calls, monkeypatch):
        job_id = job_in(S.QUEUED, dispatched=False)
        assert Job.get_by_id(job_id).dispatched_at is None
        # When the store refuses the message
        with engine.refusing():
            assert engine.rt.queue.enqueue("route", job_id) is False
        # Then nothing was sent, and the job row says a message went out (reclaim's "lost message" rule)
        engine.settle()
        assert engine.rt.queue.backlog() == 0 and calls == []
        job = Job.get_by_id(job_id)
        assert job.status == "queued" and job.dispatched_at is not None and not job.parked
        # When the dispatch sweep runs once the message is overdue, it sends it again (once), and it runs
        with monkeypatch.context() as m:
            m.setattr(supervisor, "db_now", lambda: job.dispatched_at + supervisor.DISPATCH_STALE_SEC + 1)
            assert supervisor.redispatch(engine.rt) == 1
        engine.start()
        delivered(engine, calls, [("route", job_id)])
        assert ended(job_id)

    def test_an_unknown_stage_is_refused_before_anything_is_written(self, engine, calls):
        job_id = job_in(S.QUEUED, dispatched=False)
        with pytest.raises(ValueError, match="unknown stage"):
            engine.rt.queue.enqueue("deploy", job_id)
        assert Job.get_by_id(job_id).dispatched_at is None and engine.rt.queue.backlog() == 0

    def test_a_stamped_enqueue_leaves_the_dispatch_mark_to_its_caller(self, engine, calls):
        job_id = job_in(S.QUEUED, dispatched=False)
        assert engine.rt.queue.enqueue("route", job_id, stamped=True)
        assert Job.get_by_id(job_id).dispatched_at is None and engine.rt.queue.backlog() == 1
        engine.start()
        delivered(engine, calls, [("route", job_id)])
        assert ended(job_id)


def test_the_dispatch_sweep_leaves_its_own_workers_slot_waiters_and_sends_any_other(stub_runtime, monkeypatch):
    # Given a generation whose message was taken long ago: nobody's lease, not parked
    rt = stub_runtime()
    rt.queue.pause()
    job_id = job_in(S.GENERATING)
    later = Job.get_by_id(job_id).dispatched_at + supervisor.DISPATCH_STALE_SEC + 1
    monkeypatch.setattr(supervisor, "db_now", lambda: later)
    # When it waits for a generation slot of this process, this process's sweep does not send it again
    rt.work.wait_for_slot(job_id)
    assert supervisor.redispatch(rt) == 0 and rt.queue.backlog() == 0
    # When it waits here no more (a process that died: its slots and waiters are gone), the sweep sends it
    assert rt.work.take_slot_waiter() == job_id
    rt.work.generation_slots.release()
    assert supervisor.redispatch(rt) == 1 and rt.queue.backlog() == 1


@pytest.mark.parametrize("returning", [True, False], ids=["one-statement-take", "sqlite-before-3.35"])
def test_huey_takes_in_priority_then_age_order_and_never_twice(tmp_path, monkeypatch, returning):
    # Given alter0's queue store (both ways of taking: DELETE … RETURNING, or a read and a delete on SQLite
    # before 3.35), two processes' worth of connections on one file, and 60 messages of three priorities
    import threading

    from tasks.huey_engine import app

    monkeypatch.setattr(app, "HAS_RETURNING", returning)
    path = tmp_path / "huey.db"
    first = app.QueueStorage("alter0", filename=str(path), journal_mode="wal")
    second = app.QueueStorage("alter0", filename=str(path), journal_mode="wal")
    sent = [(f"m{i}".encode(), i % 3 * 10) for i in range(60)]
    for data, priority in sent:
        first.enqueue(data, priority)
    # When one connection takes 6, then both take the rest at once
    head = [first.dequeue() for _ in range(6)]
    taken: dict[str, list[bytes]] = {"first": [], "second": []}

    def drain(name, storage):
        while (data := storage.dequeue()) is not None:
            taken[name].append(data)

    threads = [threading.Thread(target=drain, args=(n, s)) for n, s in (("first", first), ("second", second))]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    # Then the first 6 are the oldest of the highest priority, and every message was taken exactly once
    expected = [data for data, _ in sorted(sent, key=lambda s: (-s[1], int(s[0][1:])))]
    assert head == expected[:6]
    rest = taken["first"] + taken["second"]
    assert sorted(head + rest) == sorted(expected) and len(head + rest) == 60
    assert first.dequeue() is None and second.dequeue() is None
    first.close(), second.close()
