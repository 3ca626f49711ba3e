"""The inbox: every incoming platform event recorded once (unique on platform + event id) before it is acted on,
and its submission made idempotent, so a restart or a redelivered update never makes a second job."""

from __future__ import annotations

from typing import Iterable

from ..database import write_tx
from ..models import ChannelEvent, Job, now
from .base import Incoming


def record(platform: str, events: Iterable[Incoming], stale: set[str] = frozenset()) -> list[ChannelEvent]:
    """Insert the events not seen before (one transaction); stale ones are kept but never acted on. Returns the
    newly recorded rows; a redelivered event is ignored here."""
    fresh = []
    with write_tx():
        for e in events:
            inserted = (ChannelEvent.insert(
                platform=platform, event_id=e.event_id, kind=e.kind, user_id=e.user_id, channel_id=e.channel_id,
                thread_key=e.thread_key, content=e.content, platform_message_id=e.platform_message_id,
                payload=e.payload, state="stale" if e.event_id in stale else "received", created_at=now())
                .on_conflict_ignore().as_rowcount().execute())
            if inserted:
                fresh.append(e.event_id)
    return list(ChannelEvent.select().where(ChannelEvent.platform == platform, ChannelEvent.event_id << fresh)
                .order_by(ChannelEvent.id)) if fresh else []


def pending(platform: str, limit: int = 100) -> list[ChannelEvent]:
    """Recorded events not yet handled, oldest first (after a crash these are handled again: idempotently)."""
    return list(ChannelEvent.select().where(ChannelEvent.platform == platform, ChannelEvent.state == "received")
                .order_by(ChannelEvent.id).limit(limit))


def following(platform: str) -> list[ChannelEvent]:
    """Submitted messages whose job outcome has not been turned into deliveries yet."""
    return list(ChannelEvent.select().where(ChannelEvent.platform == platform, ChannelEvent.state == "submitted")
                .order_by(ChannelEvent.id))


def moved(platform: str) -> list[tuple[ChannelEvent, int]]:
    """Answered messages whose job was moved to another task since (``service.move``, from any surface), each
    with the job that now runs it: its outcome is delivered like the first one (found from the moved jobs, few)."""
    rows = (ChannelEvent.select(ChannelEvent, Job.id.alias("moved_to"))
            .join(Job, on=(Job.moved_from == ChannelEvent.job))
            .where(Job.moved_from.is_null(False), ChannelEvent.platform == platform, ChannelEvent.state == "done")
            .order_by(ChannelEvent.id).objects())
    return [(r, r.moved_to) for r in rows]


def request_id(event: ChannelEvent) -> str:
    """The idempotency key of the job an event makes: submitting it twice returns the first job."""
    return f"{event.platform}:{event.event_id}"


def mark(event: ChannelEvent, state: str, **fields) -> None:
    """Move an event on (inside the caller's transaction when there is one)."""
    ChannelEvent.update(state=state, **fields).where(ChannelEvent.id == event.id).execute()
    event.state = state
    for k, v in fields.items():
        setattr(event, k, v)


def last_job_of(platform: str, user_id: str, channel_id: str) -> int | None:
    """The newest job this user started in this chat (what /cancel and /retry act on without an id)."""
    return (ChannelEvent.select(ChannelEvent.job).where(
        ChannelEvent.platform == platform, ChannelEvent.user_id == user_id, ChannelEvent.channel_id == channel_id,
        ChannelEvent.job.is_null(False)).order_by(ChannelEvent.id.desc()).limit(1).scalar())
