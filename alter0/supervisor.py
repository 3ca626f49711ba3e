"""The worker's supervisor: heartbeats, lease renewal, cancel delivery, crash reclaim, maintenance and drain.

It runs beside whatever engine executes the stages (Huey threads, Dramatiq threads) in one thread, so
everything periodic (reclaim, retention) runs the same on every engine.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from . import jobstate, liveness, retention
from .models import ACTIVE, Job, Worker, now, stage_of
from .clock import db_now
from .database import checkpoint, write_tx
from .runtime import Runtime
from .turns import runnable_parked

log = logging.getLogger(__name__)
#: Engines that cannot list their messages: an unacknowledged message is re-sent after this long.
DISPATCH_STALE_SEC = 30.0
#: How often, in seconds, a worker copies the WAL into the database (SQLite checkpoints on its own too).
CHECKPOINT_SEC = 60.0
#: How often, in seconds, a worker looks for jobs whose message was lost.
DISPATCH_SWEEP_SEC = 0.5
#: A parked job whose turn came is re-sent by the sweep only if no message was sent for it this long.
PARKED_RESEND_SEC = 3.0


class Supervisor:
    """One per worker process: keeps the Worker row, leases and cancels current; re-queues stuck jobs."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="alter0-supervisor", daemon=True)
        self._last_beat = 0.0

    def start(self) -> None:
        Worker.insert(id=self.rt.owner, host=liveness.HOST, pid=os.getpid(), started_at=now(), last_beat=db_now(),
                      state="running").on_conflict(conflict_target=[Worker.id], preserve=[
            Worker.host, Worker.pid, Worker.started_at, Worker.last_beat, Worker.state]).execute()
        self.bury_dead_workers()
        reclaim(self.rt)
        redispatch(self.rt)
        self.thread.start()
        self.rt.warm_in_background()  # the model loads while the threads already take messages

    def _loop(self) -> None:
        last_sweep = last_dispatch = last_checkpoint = 0.0
        while not self.stop_event.wait(liveness.BEAT_SEC / 4):
            try:
                self.tick()
                if time.monotonic() - last_dispatch >= DISPATCH_SWEEP_SEC and not self.rt.work.draining.is_set():
                    last_dispatch = time.monotonic()
                    if self.bury_dead_workers(local_only=True):  # a worker of this host died: its jobs now
                        reclaim(self.rt)
                    redispatch(self.rt)
                if time.monotonic() - last_sweep >= self.rt.cfg["runtime.queue.reclaim_interval_sec"]:
                    last_sweep = time.monotonic()
                    self.bury_dead_workers()
                    reclaim(self.rt)
                    retention.run_due(self.rt.cfg)
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SEC:
                    last_checkpoint = time.monotonic()
                    checkpoint()
            except Exception:
                log.exception("supervisor tick failed")

    def tick(self) -> None:
        """Deliver cancel requests to running jobs; heartbeat and renew leases about once a second."""
        running = self.rt.work.snapshot()
        if running:
            for j in list(Job.select(Job.id).where(Job.id.in_(list(running)) & Job.cancel_requested)):
                running[j.id].set()
        t = time.monotonic()
        if t - self._last_beat >= liveness.BEAT_SEC:
            self._last_beat = t
            state = "draining" if self.rt.work.draining.is_set() else "running"
            with write_tx(durable=False):  # one commit, not flushed: a power cut ends this worker's leases anyway
                jobstate.renew(self.rt.owner, list(running), self.rt.cfg["runtime.queue.lease_sec"])
                Worker.update(last_beat=db_now(), in_flight=len(running), state=state).where(
                    Worker.id == self.rt.owner).execute()

    def bury_dead_workers(self, local_only: bool = False) -> int:
        """Mark workers that are no longer alive (liveness rule) as stopped; free their leases; how many.
        ``local_only``: only those of this host whose process is gone (a cheap check, run every dispatch sweep,
        so the jobs of a worker killed on this host are reclaimed within about half a second)."""
        limit = liveness.stale_after(self.rt.cfg)
        others = [r for r in liveness.worker_rows() if r["id"] != self.rt.owner]
        if local_only:
            others = [r for r in others if r["host"] == liveness.HOST]
        buried = 0
        for w in liveness.with_health(others, limit):
            if w["alive"] or (local_only and w["health"] != "dead"):
                continue
            buried += 1
            Worker.update(state="stopped").where(Worker.id == w["id"]).execute()
            if w["host"] == liveness.HOST:
                kill_orphaned_executors(w["id"])
            n = jobstate.expire_leases(w["id"])
            jobstate.mark_lost(sent_before=w["last_beat"])
            log.warning("worker %s is gone (last beat %.0fs ago); %d lease(s) freed", w["id"], w["beat_age_sec"], n)
        return buried

    def stop(self, drain_timeout: float) -> bool:
        """Stop taking work, wait up to ``drain_timeout`` for in-flight stages, then cancel the rest for reclaim."""
        self.rt.work.draining.set()
        Worker.update(state="draining").where(Worker.id == self.rt.owner).execute()
        self._wait_in_flight(drain_timeout)
        left = self.rt.work.snapshot()
        for event in left.values():
            event.set()  # stages see draining and leave the job for the next start
        self._wait_in_flight(5)
        self.stop_event.set()
        jobstate.expire_leases(self.rt.owner)
        Worker.update(state="stopped", in_flight=0, last_beat=db_now()).where(Worker.id == self.rt.owner).execute()
        return not left

    def _wait_in_flight(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.rt.work.snapshot():
                return
            time.sleep(0.05)


def kill_orphaned_executors(worker_id: str) -> None:
    """Kill the executor process groups a dead worker of this host left running (its jobs will re-run)."""
    for job_id, pgid in jobstate.leased_executors(worker_id):
        try:
            os.killpg(pgid, signal.SIGKILL)
            log.warning("killed executor process group %s left by dead worker %s (job %s)", pgid, worker_id,
                        job_id, extra={"job_id": job_id})
        except (ProcessLookupError, PermissionError):
            pass
        jobstate.set_executor_pgid(job_id, None)


def reclaim(rt: Runtime) -> int:
    """Re-queue non-terminal jobs that nobody runs: expired leases and parked jobs whose turn came
    (lost messages: ``redispatch``)."""
    t = db_now()
    unleased = Job.lease_owner.is_null() | (Job.lease_expires < t)
    expired = Job.lease_owner.is_null(False) & (Job.lease_expires < t)
    quiet = Job.dispatched_at.is_null() | (Job.dispatched_at < t - PARKED_RESEND_SEC)  # no message sent lately
    cond = Job.status.in_(ACTIVE) & unleased & ((runnable_parked() & quiet) | expired)
    n = 0
    for job in list(Job.select(Job.id, Job.status, Job.lease_owner).where(cond).order_by(Job.id).limit(500)):
        if job.lease_owner:
            jobstate.release(job.id, job.lease_owner)
            log.warning("reclaiming job %s stuck in %s", job.id, job.status, extra={"job_id": job.id})
        rt.queue.enqueue(stage_of(job.status), job.id)
        n += 1
    return n


def redispatch(rt: Runtime) -> int:
    """Re-send the stage message of every job that waits for one in vain: active, nobody's lease, not parked,
    its last message sent over ``runtime.queue.dispatch_deadline_sec`` ago and no longer in the queue store
    (the web or CLI died between commit and send, the store was locked, a worker died holding it, a backup
    was restored). A duplicate is harmless: a stage runs only under its lease, from the state it expects."""
    overdue = (Job.status.in_(ACTIVE) & Job.lease_owner.is_null() & ~Job.parked &
               (Job.dispatched_at.is_null() |
                (Job.dispatched_at < db_now() - rt.cfg["runtime.queue.dispatch_deadline_sec"])))
    if not Job.select(Job.id).where(overdue).exists():
        return 0
    waiting = rt.queue.pending()  # read before the jobs: a message taken meanwhile is listed, not re-sent
    mine = rt.work.slot_waiters()  # taken here, waiting for a slot here: the generation that frees one runs it
    t = db_now()
    n = 0
    # rows, not models: under a backlog every waiting job is overdue, and this runs twice a second
    for job_id, status, sent in list(Job.select(Job.id, Job.status, Job.dispatched_at).where(overdue)
                                     .order_by(Job.id).limit(500 + len(mine)).tuples()):
        if job_id in mine:
            continue
        stage = stage_of(status)
        if waiting is None:
            if sent is not None and sent > t - DISPATCH_STALE_SEC:
                continue
        elif (stage, job_id) in waiting:
            continue
        if jobstate.redispatch(job_id, status, sent):
            log.warning("job %s: its %s message is not in the queue (sent %s); sent again", job_id, stage,
                        "never" if sent is None else f"{t - sent:.1f} s ago", extra={"job_id": job_id, "stage": stage})
            rt.queue.enqueue(stage, job_id, stamped=True)
            n += 1
    return n
