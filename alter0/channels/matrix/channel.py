"""The Matrix channel: /sync long polling with the saved ``next_batch``, invites accepted from allowed users only,
the allowlist, ``!`` commands, answers in the task's thread (``m.thread``), a "working…" message edited
(``m.replace``) with the stage and replaced by the reply, HTML-formatted replies split under a size limit, and
notifications to a room; everything sent goes through the outbox."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from ...models import ChannelDelivery, ChannelEvent, Job, NotifyEvent
from ...notify import notices
from ...runtime import Runtime
from .. import chat, outbox
from ..base import Channel, Outgoing, Permanent
from ..text import split
from . import html
from .events import COMMAND_PREFIX, PLATFORM, mxid, parse_event, parse_sync

HELP = """Send a message to give it to your agent: I answer in a thread on it, and everything you write in that
thread goes to the same task. Commands:
!task list          your open tasks
!task use N         send your next messages to task N (!task use none: route again)
!new [TITLE]        start a new task and use it
!assign N           move this thread (or, outside a thread, your next messages) to task N
!status             queue backlog and workers
!cancel [JOB]       cancel your last job (or JOB)
!retry [JOB]        run your last failed job (or JOB) again"""
REFUSAL = "This bot is private: {uid} is not on its allowlist. Nothing was sent to an agent."
ONLY_TEXT = "Only text for now: this {what} was not sent to the agent."
EDITS = "Edits are not applied: send the change as a new message."
DELETIONS = "Deleting a message does not undo it: use !cancel to stop its job."
GREETING = "alter0 is here. Send a message to start, or !help."
#: Sync filter: only what the channel reads (room timelines and invites), no presence, receipts or typing.
FILTER = {"presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]},
          "room": {"ephemeral": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]},
                   "state": {"lazy_load_members": True}}}


class MatrixChannel(Channel):
    """A Matrix bot account over the client-server API (matrix-nio)."""

    platform = PLATFORM
    #: One /sync answers with everything new (no batches to drain): the cold-start filter is the first sync only.
    batch_limit = 10 ** 9

    def __init__(self, rt: Runtime):
        super().__init__(rt)
        # matrix-nio (and aiohttp) are imported here, by the channel process only: loading the class from
        # channels.registry (``alter0 status``, /api/status, doctor) must not pay their ~1 s import.
        from .client import MatrixClient
        c = self.cfg
        self.client = MatrixClient(c["channels.matrix.homeserver"], c["channels.matrix.user_id"],
                                   c["channels.matrix.access_token"], c["channels.matrix.password"],
                                   c["channels.matrix.device_id"], c["channels.delivery.request_timeout_sec"])

    @classmethod
    def problems(cls, cfg) -> list[str]:
        out = []
        if not cfg["channels.matrix.homeserver"]:
            out.append("channels.matrix.homeserver is not set (the homeserver's URL, e.g. https://matrix.org)")
        if not cfg["channels.matrix.user_id"]:
            out.append("channels.matrix.user_id is not set (the bot account, e.g. @alter0:example.org)")
        if not (cfg["channels.matrix.access_token"] or cfg["channels.matrix.password"]):
            out.append("neither channels.matrix.access_token nor channels.matrix.password is set "
                       "(set ALTER0_MATRIX_TOKEN or ALTER0_MATRIX_PASSWORD)")
        if not cfg["channels.matrix.allowed_users"]:
            out.append("channels.matrix.allowed_users is empty: nobody could use the bot (add your Matrix user id)")
        return out

    @classmethod
    def checks(cls, cfg) -> list[str]:
        """The homeserver answers ``/_matrix/client/versions``."""
        url = f"{cfg['channels.matrix.homeserver'].rstrip('/')}/_matrix/client/versions"
        try:
            resp = httpx.get(url, timeout=cfg["channels.delivery.request_timeout_sec"])
            if resp.status_code == 200 and resp.json().get("versions"):
                return []
            return [f"homeserver {url} answered {resp.status_code}, not a Matrix versions list"]
        except (httpx.HTTPError, ValueError) as exc:
            return [f"homeserver {url} is unreachable: {type(exc).__name__}: {exc}"]

    # --- in -----------------------------------------------------------------------------------------
    def poll(self, cursor: str | None, cold: bool):
        wait = self.cfg["channels.matrix.poll_timeout_sec"]
        limit = 1 if cursor is None else self.cfg["channels.matrix.timeline_limit"]  # history is not answered
        sync_filter = dict(FILTER, room=dict(FILTER["room"], timeline={"limit": limit}))
        resp = self.client.call("sync", "sync", timeout=wait * 1000, sync_filter=sync_filter, since=cursor,
                                full_state=False, wait=wait + self.cfg["channels.delivery.request_timeout_sec"])
        events = parse_sync(resp, self.client.user_id, cursor)
        if cursor is not None:  # a room with more new events than the timeline holds: fetch the gap, oldest first
            for room_id, room in resp.rooms.join.items():
                if room.timeline.limited and room.timeline.prev_batch:
                    events = [parse_event(room_id, e, self.client.user_id)
                              for e in self.client.gap(room_id, room.timeline.prev_batch, cursor)] + events
        return events, resp.next_batch

    def stale(self, events, cold: bool) -> set[str]:
        """A cold start's first sync: every timeline event is room history (recorded, never answered); pending
        invites are not history and are handled."""
        return {e.event_id for e in events if e.kind != "invite"}

    def allowed(self, event: ChannelEvent) -> bool:
        return event.kind == "other" or mxid(event.user_id) in self.cfg["channels.matrix.allowed_users"]

    # --- answers ------------------------------------------------------------------------------------
    def refuse(self, event: ChannelEvent) -> list[Outgoing]:
        if event.kind == "invite":  # rejecting an invite is leaving the room one was invited to
            return [Outgoing(f"reject:{PLATFORM}:{event.id}", "leave", {"room_id": event.payload["room_id"]})]
        return [self._message(event, "refusal", REFUSAL.format(uid=mxid(event.user_id)))]

    def rejected(self, event: ChannelEvent, message: str) -> list[Outgoing]:
        return [self._message(event, "rejected", f"Not sent to the agent: {message}")]

    def answer(self, event: ChannelEvent) -> list[Outgoing]:
        if event.kind == "invite":
            room = event.payload["room_id"]
            return [Outgoing(f"join:{PLATFORM}:{event.id}", "join", {"room_id": room}),
                    Outgoing(f"greeting:{PLATFORM}:{event.id}", "send",
                             {"room_id": room, "content": html.content(GREETING, "m.notice")})]
        texts = {"edit": EDITS, "deletion": DELETIONS,
                 "unsupported": ONLY_TEXT.format(what=_what((event.payload or {}).get("what")))}
        if event.kind in texts:
            return [self._message(event, event.kind, texts[event.kind])]
        if event.kind == "command":
            return [self._message(event, "command", self._command(event))]
        return []

    def _command(self, event: ChannelEvent) -> str:
        words = event.content[len(COMMAND_PREFIX):].split()
        name = words[0].lower() if words else ""
        if name in ("help", "start"):
            return HELP
        if not chat.known(name):
            return f"unknown command {COMMAND_PREFIX}{name}; try {COMMAND_PREFIX}help"
        return chat.command(self.rt, event, name, words[1:]).replace("/task ", "!task ").replace("/help", "!help")

    # --- jobs ---------------------------------------------------------------------------------------
    def working(self, event: ChannelEvent, job: Job) -> list[Outgoing]:
        out = self._message(event, "working", chat.working_line(job))
        out.key = self.working_key(event)
        return [out]

    def progress(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        item = self._message(event, f"progress:{job.status}", chat.working_line(job))
        item.payload.update(_edit_of=self.working_key(event), _only_edit=True)
        return [item]

    def outcome(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        round_ = int((job.finished_at or 0) * 1000)
        out = []
        for i, part in enumerate(split(chat.outcome_text(job), self.cfg["channels.matrix.max_message_chars"])):
            item = self._message(event, f"reply:{round_}:{i}", part)
            if i == 0:
                item.payload["_edit_of"] = self.working_key(event)
            out.append(item)
        return out

    @classmethod
    def notifies(cls, cfg) -> bool:
        return bool(cfg["channels.matrix.notify_room"])

    def notification(self, event: NotifyEvent) -> list[Outgoing]:
        """A feed event as one ``m.notice`` in ``channels.matrix.notify_room`` (the shared one-line text); a job
        started from that room is answered there already, so it gets none."""
        room = self.cfg["channels.matrix.notify_room"]
        line = notices.for_chat(event, f"{PLATFORM}:{room}") if room else None
        if line is None:
            return []
        return [Outgoing(f"notify:{PLATFORM}:{event.id}", "send", {"room_id": room,
                                                                   "content": html.content(line, "m.notice")})]

    # --- out ----------------------------------------------------------------------------------------
    def _message(self, event: ChannelEvent, kind: str, text: str) -> Outgoing:
        """A message answering ``event``: in its thread when it has one, else as a reply to it."""
        where = event.payload or {}
        content = html.content(text)
        if where.get("thread_root"):
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": where["thread_root"],
                                       "is_falling_back": True, "m.in_reply_to": {"event_id": where["event_id"]}}
        elif where.get("event_id"):
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": where["event_id"]}}
        return Outgoing(f"{kind}:{PLATFORM}:{event.id}", "send", {"room_id": where.get("room_id"),
                                                                 "content": content})

    def send(self, delivery: ChannelDelivery) -> str | None:
        payload, txn = delivery.payload, _txn(delivery)
        room = payload["room_id"]
        if delivery.method == "join":
            return self.client.call("join", "join", room).room_id
        if delivery.method == "leave":
            self.client.call("leave", "room_leave", room)
            return None
        ref = outbox.by_key(payload["_edit_of"]) if payload.get("_edit_of") else None
        if ref is not None and ref.result_id:
            try:
                return self._send(room, _edit(ref.result_id, payload["content"]), txn)
            except Permanent:  # the "working…" message is gone: send the reply as a new message
                if payload.get("_only_edit"):
                    return None
        elif payload.get("_only_edit"):
            return None
        return self._send(room, payload["content"], txn + "n")

    def _send(self, room: str, content: dict, txn: str) -> str:
        # The transaction id is the delivery's: a resend after a crash is recognised by the homeserver (one event).
        return self.client.call("send", "room_send", room, "m.room.message", content, tx_id=txn).event_id

    def close(self) -> None:
        self.client.close()


def _edit(target: str, new: dict) -> dict:
    """An ``m.replace`` edit of event ``target`` to ``new`` (clients show ``m.new_content``; the starred body is the
    fallback)."""
    new = {k: v for k, v in new.items() if k != "m.relates_to"}
    return {"msgtype": new["msgtype"], "body": f"* {new['body']}", "format": new["format"],
            "formatted_body": f"* {new['formatted_body']}", "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


def _txn(delivery: ChannelDelivery) -> str:
    return "alter0-" + hashlib.sha256(f"{delivery.key}|{delivery.created_at}".encode()).hexdigest()[:32]


def _what(kind: Any) -> str:
    return {"m.image": "image", "m.file": "file", "m.audio": "audio message", "m.video": "video",
            "m.sticker": "sticker", "m.room.encrypted": "encrypted message"}.get(kind, "message")
