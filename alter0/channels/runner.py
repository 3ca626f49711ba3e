"""A channel's process loop: poll the platform into the inbox, handle each recorded event once (submit or answer),
follow submitted jobs into outbox deliveries, queue the channel's posts of the notification feed, and send the
outbox. Serial per channel; a restart resumes."""

from __future__ import annotations

import logging
import threading
import time

from .. import service
from ..audit import record as audit
from ..database import write_tx
from ..errors import Alter0Error
from ..models import ChannelEvent, Job, TERMINAL
from ..notify import feed
from . import inbox, outbox, state
from .base import Channel, Transient

log = logging.getLogger(__name__)
#: How often the channel's sweep (work not caused by its own events) runs.
SWEEP_SEC = 1.0


class Runner:
    """Drives one Channel: a poll thread and the handling/delivery loop."""

    def __init__(self, channel: Channel, tick: float = 0.05):
        self.channel = channel
        self.platform = channel.platform
        self.rt = channel.rt
        self.tick = tick
        self.seen: dict[int, str] = {}  # event id -> job status last shown
        self.deliverer = outbox.Deliverer(channel, channel.cfg["channels.delivery.max_delay_sec"],
                                          on_error=lambda e: state.failed(self.platform, e, disconnected=False))
        self.wake = threading.Event()
        self.notifying = type(channel).notifies(channel.cfg)  # posts the notification feed (a notify chat)
        self.draining = False  # a cold start's backlog is still coming in full batches: still cold
        self.next_sweep = 0.0

    # --- poll ---------------------------------------------------------------------------------------
    def poll_once(self) -> int:
        """One poll: record new events (stale ones flagged on a cold start only), then save the cursor."""
        saved = state.get(self.platform)
        cursor = saved.cursor if saved else None
        cold = cursor is None or self.draining
        events, new_cursor = self.channel.poll(cursor, cold)
        stale = self.channel.stale(events, cold) if cold and events else set()
        self.draining = cold and len(events) >= self.channel.batch_limit
        fresh = inbox.record(self.platform, events, stale)
        state.polled(self.platform, new_cursor if new_cursor != cursor else None, got_events=bool(events))
        if fresh:
            self.wake.set()
        return len(fresh)

    def poll_loop(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                self.poll_once()
                delay = 0.5
            except Transient as exc:
                state.failed(self.platform, f"poll: {exc.message}")
                stop.wait(exc.retry_after or delay)
                delay = min(delay * 2, self.channel.cfg["channels.delivery.max_delay_sec"])
            except Exception as exc:  # the loop survives anything; the state shows why
                log.exception("%s poll failed", self.platform)
                state.failed(self.platform, f"poll: {type(exc).__name__}: {exc}")
                stop.wait(delay)

    # --- handle -------------------------------------------------------------------------------------
    def handle(self, event: ChannelEvent) -> None:
        """Act on one recorded event exactly once: a crash midway repeats only idempotent steps."""
        if not self.channel.allowed(event):
            audit(self.rt.output_dir, self.rt.cfg.secrets(), "refused_request", who=event.user_id,
                  source=self.platform, what=event.content or event.kind, allowed=False,
                  channel_id=event.channel_id, event_id=event.event_id)
            self._answer(event, self.channel.refuse(event), "refused")
        elif event.kind == "message":
            self._submit(event)
        else:
            self._answer(event, self.channel.answer(event), "answered")

    def _submit(self, event: ChannelEvent) -> None:
        what = self.channel.submission(event)
        if what is None:
            inbox.mark(event, "ignored")
            return
        try:
            job, _ = service.submit(self.rt, what["content"], what["user_id"], what["channel_id"],
                                    request_id=inbox.request_id(event), thread_key=what["thread_key"])
        except Alter0Error as exc:
            self._answer(event, self.channel.rejected(event, exc.message), "answered", detail=exc.message)
            return
        with write_tx():
            outbox.enqueue(self.platform, self.channel.working(event, job), event)
            inbox.mark(event, "submitted", job=job.id)

    def _answer(self, event: ChannelEvent, items, state_: str, detail: str | None = None) -> None:
        with write_tx():
            outbox.enqueue(self.platform, items, event)
            inbox.mark(event, state_, detail=detail)

    def follow(self, event: ChannelEvent) -> None:
        """Turn a submitted job's progress and outcome into deliveries (the outcome once, with the event done)."""
        job = Job.get_or_none(Job.id == event.job_id)
        if job is None:  # deleted meanwhile: nothing left to report
            inbox.mark(event, "done", detail="job no longer exists")
            return
        working = outbox.by_key(self.channel.working_key(event))
        if job.state in TERMINAL:
            with write_tx():
                outbox.enqueue(self.platform, self.channel.outcome(event, job, working), event)
                inbox.mark(event, "done")
            self.seen.pop(event.id, None)
        elif self.seen.get(event.id) != job.status and working is not None and working.state == "delivered":
            outbox.enqueue(self.platform, self.channel.progress(event, job, working), event)
            self.seen[event.id] = job.status

    def step(self) -> int:
        """Handle new events, follow jobs, send due deliveries; how many deliveries went out."""
        for event in inbox.pending(self.platform):
            try:
                self.handle(event)
            except Exception as exc:  # one bad event must not block the ones after it; it stays recorded
                log.exception("%s event %s failed", self.platform, event.event_id)
                why = f"{type(exc).__name__}: {exc}"[:500]
                inbox.mark(event, "error", detail=why)
                state.failed(self.platform, f"event {event.event_id}: {why}", disconnected=False)
        for event, job_id in inbox.moved(self.platform):  # moved since: the new job's reply follows
            inbox.mark(event, "submitted", job=job_id)
        for event in inbox.following(self.platform):
            if event.job_id is None:
                inbox.mark(event, "done")
            else:
                self.follow(event)
        if time.time() >= self.next_sweep:
            self.next_sweep = time.time() + SWEEP_SEC
            for event, items in self.channel.sweep():
                outbox.enqueue(self.platform, items, event)
        if self.notifying:
            feed.fan_out(f"channel:{self.platform}", self.platform, self.channel.notification)
        return self.deliverer.run_once()

    def run(self, stop: threading.Event) -> None:
        state.started(self.platform)
        poller = threading.Thread(target=self.poll_loop, args=(stop,), name=f"{self.platform}-poll", daemon=True)
        poller.start()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception as exc:
                    log.exception("%s step failed", self.platform)
                    state.failed(self.platform, f"{type(exc).__name__}: {exc}", disconnected=False)
                    time.sleep(0.5)
                self.wake.wait(self.tick)
                self.wake.clear()
        finally:
            stop.set()
            poller.join(timeout=self.channel.cfg.get(f"channels.{self.platform}.poll_timeout_sec", 0) + 5)
            state.stopped(self.platform)
            self.channel.close()
