"""A channel's saved state: its platform cursor (kept across restarts), connection, last event and last error; and
the status snapshot ``alter0 status``, ``/api/status`` and the console show."""

from __future__ import annotations

import time

from ..config import Config
from ..errors import ConfigError
from ..models import ChannelDelivery, ChannelState, now
from . import outbox

#: A channel that has not polled for this long (beyond its long-poll timeout) is shown as not connected.
STALE_AFTER_SEC = 15.0


def get(platform: str) -> ChannelState | None:
    return ChannelState.get_or_none(ChannelState.platform == platform)


def _upsert(platform: str, **fields) -> None:
    (ChannelState.insert(platform=platform, **fields)
     .on_conflict(conflict_target=[ChannelState.platform], update=fields).execute())


def started(platform: str) -> None:
    _upsert(platform, started_at=now(), connected=False)


def polled(platform: str, cursor: str | None = None, got_events: bool = False) -> None:
    """A successful poll: connected; the cursor is saved only after its events are in the inbox."""
    fields = {"connected": True, "last_poll_at": now()}
    if cursor is not None:
        fields["cursor"] = cursor
    if got_events:
        fields["last_event_at"] = now()
    _upsert(platform, **fields)


def failed(platform: str, error: str, disconnected: bool = True) -> None:
    fields = {"last_error": error[:500], "last_error_at": now()}
    if disconnected:
        fields["connected"] = False
    _upsert(platform, **fields)


def stopped(platform: str) -> None:
    _upsert(platform, connected=False)


def snapshot(cfg: Config) -> list[dict]:
    """Each channel's state (enabled, configured, or seen in the database): connected, last event, undelivered
    backlog, last error. A registered channel nobody set up is not listed."""
    from .registry import channels
    try:
        platforms = [name for name, cls in channels(cfg).items()
                     if name in cfg["channels.enabled"] or not cls.problems(cfg)]
    except ConfigError as exc:
        return [{"platform": "?", "running": False, "connected": False, "last_event_at": None, "last_poll_at": None,
                 "backlog": 0, "failed_deliveries": 0, "last_error": exc.message, "last_error_at": None}]
    rows = {r.platform: r for r in ChannelState.select()}
    out = []
    for platform in sorted(set(platforms) | set(rows)):
        r = rows.get(platform)
        fresh = bool(r and r.last_poll_at and time.time() - r.last_poll_at <
                     STALE_AFTER_SEC + cfg.get(f"channels.{platform}.poll_timeout_sec", 0))
        failed_count = ChannelDelivery.select().where(ChannelDelivery.platform == platform,
                                                      ChannelDelivery.state == "failed").count()
        out.append({"platform": platform, "running": r is not None and r.started_at is not None,
                    "connected": bool(r and r.connected and fresh),
                    "last_event_at": r.last_event_at if r else None, "last_poll_at": r.last_poll_at if r else None,
                    "backlog": outbox.backlog(platform), "failed_deliveries": failed_count,
                    "last_error": r.last_error if r else None, "last_error_at": r.last_error_at if r else None})
    return out
