"""A Matrix /sync response → ``Incoming`` events: invites (who invited the bot where), and room timeline events as
text messages, ``!`` commands, edits, deletions (redactions), unsupported content (images, files, stickers,
encrypted events) or events alter0 does not act on; which thread a message belongs to (``m.thread``)."""

from __future__ import annotations

import re
from typing import Any

from ..base import Incoming

PLATFORM = "matrix"
#: Message types that carry text; the rest (m.image, m.file, m.audio, m.video, m.location) are "only text".
TEXT_TYPES = ("m.text", "m.emote")
COMMAND_PREFIX = "!"
#: A rich reply's quoted fallback at the start of the body ("> <@user:hs> quoted", then a blank line).
REPLY_FALLBACK = re.compile(r"\A(?:> .*\n)+\n")


def channel_id(room_id: str) -> str:
    return f"{PLATFORM}:{room_id}"


def user_id(mxid: str) -> str:
    return f"{PLATFORM}:{mxid}"


def mxid(user: str) -> str:
    """The Matrix user id inside an alter0 user id."""
    return user.removeprefix(f"{PLATFORM}:")


def parse_sync(resp: Any, bot: str, since: str | None) -> list[Incoming]:
    """Every event of a nio ``SyncResponse`` the inbox records: invites first, then each joined room's timeline."""
    out = [parse_invite(room_id, room.invite_state, bot, since) for room_id, room in resp.rooms.invite.items()]
    for room_id, room in resp.rooms.join.items():
        out += [parse_event(room_id, e.source, bot) for e in room.timeline.events]
    return [e for e in out if e is not None]


def parse_invite(room_id: str, state: list, bot: str, since: str | None) -> Incoming | None:
    """The bot's invite into ``room_id`` (from nio's invite-state member events): kind ``invite``, from the
    inviter. Stripped invite state has no event id: the sync position it arrived in makes it unique (an invite
    shows in one incremental sync; a re-read after a crash before the cursor was saved is the same event)."""
    member = next((s for s in state if getattr(s, "state_key", None) == bot
                   and getattr(s, "membership", None) == "invite"), None)
    if member is None:
        return None
    return Incoming(f"invite:{room_id}:{since or 'initial'}", "invite", user_id(member.sender), channel_id(room_id),
                    payload={"room_id": room_id})


def parse_event(room_id: str, ev: dict, bot: str) -> Incoming:
    """One timeline event (kind ``other`` for the bot's own events and events alter0 does not act on)."""
    event_id, sender, kind_of = ev.get("event_id", ""), ev.get("sender", ""), ev.get("type", "")
    where = {"room_id": room_id, "event_id": event_id}
    base = dict(user_id=user_id(sender), channel_id=channel_id(room_id), platform_message_id=event_id, at=_at(ev))
    if sender == bot or not event_id or "state_key" in ev:
        return Incoming(event_id or f"{room_id}:?", "other", payload={}, **base)
    content = ev.get("content") or {}
    relation = content.get("m.relates_to") or {}
    root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
    where["thread_root"] = root
    thread = f"thread:{root}" if root else None
    if kind_of == "m.room.redaction":
        return Incoming(event_id, "deletion", thread_key=thread, payload=where, **base)
    if kind_of in ("m.sticker", "m.room.encrypted"):
        return Incoming(event_id, "unsupported", thread_key=thread, payload=dict(where, what=kind_of), **base)
    if kind_of != "m.room.message":
        return Incoming(event_id, "other", payload={}, **base)
    if relation.get("rel_type") == "m.replace":
        return Incoming(event_id, "edit", thread_key=thread, payload=where, **base)
    if content.get("msgtype") not in TEXT_TYPES or not isinstance(content.get("body"), str):
        what = content.get("msgtype") or "unknown"
        return Incoming(event_id, "unsupported", thread_key=thread, payload=dict(where, what=what), **base)
    text = REPLY_FALLBACK.sub("", content["body"], count=1) if "m.in_reply_to" in relation else content["body"]
    if text.lstrip().startswith(COMMAND_PREFIX):
        return Incoming(event_id, "command", thread_key=thread, content=text.strip(), payload=where, **base)
    # A top-level message starts a thread: alter0 answers in a thread on it, and that thread is bound to its task.
    where["thread_root"] = root or event_id
    return Incoming(event_id, "message", thread_key=f"thread:{root or event_id}", content=text,
                    payload=where, **base)


def _at(ev: dict) -> float | None:
    ts = ev.get("origin_server_ts")
    return ts / 1000 if isinstance(ts, (int, float)) else None
