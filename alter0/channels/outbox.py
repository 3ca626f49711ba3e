"""The delivery outbox: every reply, notice and progress edit is a row with attempts and backoff, sent until the
platform takes it; 429 (``retry_after``), 5xx and timeouts delay a delivery but never lose it."""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..database import write_tx
from ..models import ChannelDelivery, ChannelEvent, now
from ..secrets import scrub
from .base import Outgoing, Permanent, Sender, Transient

log = logging.getLogger(__name__)

#: In-process attempts of one delivery before it is put back with a backoff (a blip is retried at once).
QUICK_ATTEMPTS = 2
#: Progress edits superseded by a newer edit or the reply are dropped, not sent late.
SUPERSEDABLE = ("progress",)


def enqueue(platform: str, items: Iterable[Outgoing], event: ChannelEvent | None = None) -> int:
    """Queue deliveries (inside the caller's transaction when there is one); a key already queued is ignored."""
    n = 0
    for item in items:
        n += (ChannelDelivery.insert(platform=platform, key=item.key, event=event.id if event else None,
                                     method=item.method, payload=item.payload, created_at=now(), next_at=now())
              .on_conflict_ignore().as_rowcount().execute())
    return n


def by_key(key: str) -> ChannelDelivery | None:
    return ChannelDelivery.get_or_none(ChannelDelivery.key == key)


def backlog(platform: str) -> int:
    """Deliveries not yet taken by the platform."""
    return ChannelDelivery.select().where(ChannelDelivery.platform == platform,
                                          ChannelDelivery.state == "pending").count()


def _wait(state: RetryCallState) -> float:
    """The platform's retry_after when it gave one (capped at 5 s in-process), else a short jittered backoff."""
    exc = state.outcome.exception() if state.outcome else None
    after = getattr(exc, "retry_after", None)
    return min(after, 5.0) if after else wait_exponential_jitter(initial=0.2, max=2.0)(state)


def backoff(attempts: int, max_delay: float, retry_after: float | None) -> float:
    """Seconds until a delivery's next attempt: the platform's retry_after, else doubling from 0.5 s, capped."""
    if retry_after:
        return float(retry_after)
    return min(max_delay, 0.5 * 2 ** max(0, attempts - 1))


class Deliverer:
    """Sends a platform's due deliveries in order, one lane's rows (a conversation, a webhook target) strictly in
    sequence."""

    def __init__(self, channel: Sender, max_delay: float, on_error: Callable[[str], None] = lambda e: None):
        self.channel = channel
        self.platform = channel.platform
        self.max_delay = max_delay
        self.paused_until = 0.0  # the platform said wait (429) or is down: nothing is sent before then
        self.on_error = on_error
        self.secrets = channel.cfg.secrets()

    def run_once(self) -> int:
        """Try every due delivery once; returns how many went out."""
        if time.time() < self.paused_until:
            return 0
        sent, blocked = 0, set()
        rows = list(ChannelDelivery.select().where(ChannelDelivery.platform == self.platform,  # read, then write:
                                                    ChannelDelivery.state == "pending")  # no open snapshot
                    .order_by(ChannelDelivery.id).limit(200))
        for row in rows:
            lane = self.channel.lane(row)
            if lane is not None and lane in blocked:
                continue
            if row.next_at > time.time() or not self._deliver(row):
                if lane is not None:
                    blocked.add(lane)  # later rows of this conversation wait for this one
                if time.time() < self.paused_until:
                    break
                continue
            sent += 1
        return sent

    def _superseded(self, row: ChannelDelivery) -> bool:
        kind = row.key.split(":", 1)[0]
        return kind in SUPERSEDABLE and row.event_id is not None and ChannelDelivery.select().where(
            ChannelDelivery.event == row.event_id, ChannelDelivery.id > row.id).exists()

    def _deliver(self, row: ChannelDelivery) -> bool:
        if self._superseded(row):
            self._finish(row, "skipped", None, "superseded by a newer edit")
            return True
        try:
            for attempt in Retrying(retry=retry_if_exception_type(Transient), wait=_wait, reraise=True,
                                    stop=stop_after_attempt(QUICK_ATTEMPTS)):
                with attempt:
                    result = self.channel.send(row)
        except Transient as exc:
            delay = backoff(row.attempts + 1, self.max_delay, exc.retry_after)
            self._retry_later(row, delay, exc)
            self.paused_until = time.time() + min(delay, self.max_delay)
            return False
        except Permanent as exc:
            self._finish(row, "failed", None, scrub(str(exc.message), self.secrets))
            self.on_error(f"delivery {row.key} refused: {exc.message}")
            return True
        self._finish(row, "delivered", result, None)
        self.channel.delivered(row, result)
        return True

    def _retry_later(self, row: ChannelDelivery, delay: float, exc: Exception) -> None:
        error = scrub(str(getattr(exc, "message", exc)), self.secrets)[:500]
        ChannelDelivery.update(attempts=ChannelDelivery.attempts + 1, next_at=time.time() + delay,
                               last_error=error).where(ChannelDelivery.id == row.id).execute()
        self.on_error(f"delivery {row.key} delayed {delay:.1f}s: {error}")
        log.warning("delivery %s (%s) delayed %.1fs: %s", row.id, row.key, delay, error)

    def _finish(self, row: ChannelDelivery, state: str, result: str | None, error: str | None) -> None:
        fields = {"last_error": error} if error is not None else {}  # a delivered row keeps what delayed it
        with write_tx():
            ChannelDelivery.update(state=state, result_id=result, delivered_at=now(), attempts=ChannelDelivery.attempts
                                   + 1, **fields).where(ChannelDelivery.id == row.id).execute()
        row.state, row.result_id = state, result
