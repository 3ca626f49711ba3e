"""The worker's supervisor: heartbeats, lease renewal, cancel delivery, crash reclaim and drain.

It runs beside whatever engine executes the stages (Huey threads, Dramatiq threads) in one thread.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from peewee import fn

from .models import Job, JobStatus as S, TERMINAL, Worker, now
from .runtime import Runtime

log = logging.getLogger(__name__)
BEAT_SEC = 1.0
STATE_STAGE = {S.QUEUED.value: "route", S.ROUTING.value: "route", S.GENERATING.value: "generate",
               S.CLOSING.value: "close"}
DISPATCH_STALE_SEC = 120.0
#: A parked job whose turn came is re-sent by the sweep only if no message was sent for it this long.
PARKED_RESEND_SEC = 3.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    """One per worker process: keeps the Worker row, leases and cancels current; re-queues stuck jobs."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="alter0-supervisor", daemon=True)
        self.host, self.pid = socket.gethostname(), os.getpid()

    def start(self) -> None:
        Worker.insert(id=self.rt.owner, host=self.host, pid=self.pid, started_at=now(), last_beat=now(),
                      state="running").on_conflict(conflict_target=[Worker.id], preserve=[
            Worker.host, Worker.pid, Worker.started_at, Worker.last_beat, Worker.state]).execute()
        self.bury_dead_workers()
        reclaim(self.rt)
        self.thread.start()

    def _loop(self) -> None:
        last_reclaim = 0.0
        while not self.stop_event.wait(BEAT_SEC / 4):
            try:
                self.tick()
                if time.monotonic() - last_reclaim >= self.rt.cfg["runtime.queue.reclaim_interval_sec"]:
                    last_reclaim = time.monotonic()
                    self.bury_dead_workers()
                    reclaim(self.rt)
            except Exception:
                log.exception("supervisor tick failed")

    def tick(self) -> None:
        """Deliver cancel requests to running jobs; heartbeat and renew leases about once a second."""
        with self.rt.lock:
            running = dict(self.rt.in_flight)
        if running:
            for j in list(Job.select(Job.id).where(Job.id.in_(list(running)) & Job.cancel_requested)):
                running[j.id].set()
        t = time.monotonic()
        if t - getattr(self, "_last_beat", 0) >= BEAT_SEC:
            self._last_beat = t
            from .jobstate import renew
            renew(self.rt.owner, list(running), self.rt.cfg["runtime.queue.lease_sec"])
            state = "draining" if self.rt.draining.is_set() else "running"
            Worker.update(last_beat=now(), in_flight=len(running), state=state).where(
                Worker.id == self.rt.owner).execute()

    def bury_dead_workers(self) -> None:
        """Mark workers that stopped beating (or whose pid is gone on this host) as stopped; free their leases."""
        stale = now() - max(5 * BEAT_SEC, 5.0)
        for w in list(Worker.select().where((Worker.state != "stopped") & (Worker.id != self.rt.owner))):
            dead = w.last_beat < stale or (w.host == self.host and not pid_alive(w.pid))
            if dead:
                Worker.update(state="stopped").where(Worker.id == w.id).execute()
                if w.host == self.host:
                    kill_orphaned_executors(w.id)
                n = Job.update(lease_expires=0).where(Job.lease_owner.startswith(w.id + "#")).execute()
                # messages it may have taken off the queue but not started: mark them lost so reclaim re-sends
                Job.update(dispatched_at=None).where(
                    Job.status.not_in([s.value for s in TERMINAL]) & Job.lease_owner.is_null() & ~Job.parked &
                    (Job.dispatched_at <= w.last_beat)).execute()
                log.warning("worker %s is gone (last beat %.0fs ago); %d lease(s) freed", w.id, now() - w.last_beat, n)

    def stop(self, drain_timeout: float) -> bool:
        """Stop taking work, wait up to ``drain_timeout`` for in-flight stages, then cancel the rest for reclaim."""
        self.rt.draining.set()
        Worker.update(state="draining").where(Worker.id == self.rt.owner).execute()
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            with self.rt.lock:
                if not self.rt.in_flight:
                    break
            time.sleep(0.05)
        with self.rt.lock:
            left = dict(self.rt.in_flight)
        for event in left.values():
            event.set()  # stages see draining and leave the job for the next start
        end = time.monotonic() + 5
        while time.monotonic() < end:
            with self.rt.lock:
                if not self.rt.in_flight:
                    break
            time.sleep(0.05)
        self.stop_event.set()
        Job.update(lease_expires=0).where(Job.lease_owner.startswith(self.rt.owner + "#")).execute()
        Worker.update(state="stopped", in_flight=0, last_beat=now()).where(Worker.id == self.rt.owner).execute()
        return not left


def kill_orphaned_executors(worker_id: str) -> None:
    """Kill the executor process groups a dead worker of this host left running (its jobs will re-run)."""
    for job in list(Job.select(Job.id, Job.executor_pgid).where(
            Job.lease_owner.startswith(worker_id + "#") & Job.executor_pgid.is_null(False))):
        try:
            os.killpg(job.executor_pgid, signal.SIGKILL)
            log.warning("killed executor process group %s left by dead worker %s (job %s)", job.executor_pgid,
                        worker_id, job.id, extra={"job_id": job.id})
        except (ProcessLookupError, PermissionError):
            pass
        Job.update(executor_pgid=None).where(Job.id == job.id).execute()


def runnable_parked():
    """Parked jobs whose turn has come: no earlier job of the scope routing, or of the task generating."""
    Earlier = Job.alias()
    routing = [S.QUEUED.value, S.ROUTING.value]
    route_blocked = Earlier.select(Earlier.id).where(
        (Earlier.scope == Job.scope) & Earlier.status.in_(routing) & (Earlier.id < Job.id))
    gen_blocked = Earlier.select(Earlier.id).where(
        (Earlier.task == Job.task) & (Earlier.status == S.GENERATING.value) & (Earlier.id < Job.id))
    return Job.parked & (
        (Job.status.in_(routing) & ~fn.EXISTS(route_blocked)) |
        ((Job.status == S.GENERATING.value) & ~fn.EXISTS(gen_blocked)) |
        (Job.status == S.CLOSING.value))


def reclaim(rt: Runtime) -> int:
    """Re-queue non-terminal jobs that nobody runs: expired leases, parked jobs whose turn came, lost messages."""
    t = now()
    unleased = Job.lease_owner.is_null() | (Job.lease_expires < t)
    lost = Job.dispatched_at.is_null() | (Job.dispatched_at < t - DISPATCH_STALE_SEC)
    expired = Job.lease_owner.is_null(False) & (Job.lease_expires < t)
    quiet = Job.dispatched_at.is_null() | (Job.dispatched_at < t - PARKED_RESEND_SEC)  # no message sent lately
    cond = Job.status.not_in([s.value for s in TERMINAL]) & unleased & ((runnable_parked() & quiet) | lost | expired)
    n = 0
    for job in list(Job.select(Job.id, Job.status, Job.lease_owner).where(cond).order_by(Job.id).limit(500)):
        if job.lease_owner:
            Job.update(lease_owner=None, lease_expires=None).where(
                (Job.id == job.id) & (Job.lease_owner == job.lease_owner)).execute()
            log.warning("reclaiming job %s stuck in %s", job.id, job.status, extra={"job_id": job.id})
        rt.queue.enqueue(STATE_STAGE[job.status], job.id)
        n += 1
    return n
