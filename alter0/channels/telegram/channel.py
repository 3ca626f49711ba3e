"""The Telegram channel: long polling with a saved offset, the allowlist, commands and buttons, "working…" edits,
and replies split under 4096 characters, all sent through the outbox."""

from __future__ import annotations

import time
from typing import Any

from ... import service, threads, views
from ...errors import Alter0Error
from ...models import ChannelDelivery, ChannelEvent, Job, JobStatus as S, NotifyEvent
from ...notify import notices
from ...runtime import Runtime
from .. import chat, outbox
from ..base import Channel, Outgoing, Permanent
from ..text import split
from .api import BotApi
from .updates import PLATFORM, parse

HELP = """Send a message to give it to your agent; a message in a forum topic, or a reply to one of my messages,
goes to that thread's task. Commands:
/task list              your open tasks
/task use ID            send your next messages to task ID (/task use none: route again)
/new [TITLE]            start a new task and use it
/status                 queue backlog and workers
/cancel [JOB]           cancel your last job (or JOB)
/retry [JOB]            run your last failed job (or JOB) again
/move N                 move your last message to task N (/move JOB N): it runs again there"""
REFUSAL = "This bot is private: your Telegram user id {uid} is not on its allowlist. Nothing was sent to an agent."
#: The Bot API's limit on one message's text.
LIMIT = 4096
ONLY_TEXT = "Only text messages for now; this one was not sent to the agent."
EDITS = "Edits are not applied: send the change as a new message."


class TelegramChannel(Channel):
    """Telegram Bot API over long polling."""

    platform = PLATFORM

    def __init__(self, rt: Runtime):
        super().__init__(rt)
        self.extra: list[Outgoing] = []  # messages a button sends besides its answer (the "Move…" choices)
        self.api = BotApi(self.cfg["channels.telegram.api_url"], self.cfg["channels.telegram.token"],
                          self.cfg["channels.delivery.request_timeout_sec"])

    @classmethod
    def problems(cls, cfg) -> list[str]:
        out = []
        if not cfg["channels.telegram.token"]:
            out.append("channels.telegram.token is not set (create a bot with @BotFather; set ALTER0_TELEGRAM_TOKEN)")
        if not cfg["channels.telegram.allowed_users"]:
            out.append("channels.telegram.allowed_users is empty: nobody could use the bot (add your user id)")
        return out

    # --- in -----------------------------------------------------------------------------------------
    def poll(self, cursor: str | None, cold: bool):
        wait = self.cfg["channels.telegram.poll_timeout_sec"]
        params: dict[str, Any] = {"timeout": wait, "limit": self.batch_limit,
                                  "allowed_updates": ["message", "edited_message", "callback_query"]}
        if cursor and int(cursor) > 0:
            params["offset"] = int(cursor)
        updates = self.api.call("getUpdates", params, timeout=wait + self.cfg["channels.delivery.request_timeout_sec"])
        if not updates:
            return [], cursor or "0"  # "0": this bot has polled here before, so the next start is a restart
        return [parse(u) for u in updates], str(max(u["update_id"] for u in updates) + 1)

    def stale(self, events, cold: bool) -> set[str]:
        """Cold start only: updates older than the window, and all but the newest ``stale_max_count`` (none of a
        full batch: newer ones follow it)."""
        oldest = time.time() - self.cfg["channels.telegram.stale_window_sec"]
        stale = {e.event_id for e in events if e.at is not None and e.at < oldest}
        live = [e for e in events if e.event_id not in stale]
        keep = 0 if len(events) >= self.batch_limit else self.cfg["channels.telegram.stale_max_count"]
        stale |= {e.event_id for e in live[:max(0, len(live) - keep)]}
        return stale

    def allowed(self, event: ChannelEvent) -> bool:
        if event.kind == "other":
            return True
        uid = _num(event.user_id)
        chat = (event.payload or {}).get("chat_id")
        private = (event.payload or {}).get("chat_type") == "private" or chat == uid
        return (uid in self.cfg["channels.telegram.allowed_users"]
                and (private or chat in self.cfg["channels.telegram.allowed_chats"]))

    # --- answers ------------------------------------------------------------------------------------
    def refuse(self, event: ChannelEvent) -> list[Outgoing]:
        if event.kind == "callback":
            return [self._callback_answer(event, "not allowed")]
        return [self._message(event, "refusal", REFUSAL.format(uid=_num(event.user_id)))]

    def rejected(self, event: ChannelEvent, message: str) -> list[Outgoing]:
        return [self._message(event, "rejected", f"Not sent to the agent: {message}")]

    def answer(self, event: ChannelEvent) -> list[Outgoing]:
        if event.kind == "edit":
            return [self._message(event, "edit", EDITS)]
        if event.kind == "unsupported":
            return [self._message(event, "unsupported", ONLY_TEXT)]
        if event.kind == "command":
            return [self._message(event, "command", self._command(event))]
        if event.kind == "callback":
            self.extra = []
            return [self._callback_answer(event, self._button(event)), *self.extra]
        return []

    def _command(self, event: ChannelEvent) -> str:
        words = event.content.split()
        name = words[0].split("@", 1)[0].lower()[1:]
        return HELP if name in ("start", "help") else chat.command(self.rt, event, name, words[1:])

    def _button(self, event: ChannelEvent) -> str:
        action, _, target = event.content.partition(":")
        try:
            if action in ("cancel", "retry"):
                return chat.job_action(self.rt, event, action, target)
            if action == "move":  # "Move…": offer the scope's other open tasks as buttons
                return self._move_choices(event, target)
            if action == "moveto":
                job_id, _, task_id = target.partition(":")
                job, created = service.move(self.rt, _num(job_id), _num(task_id), as_user=event.user_id,
                                            who=event.user_id, source=PLATFORM)
                return (f"job #{job.moved_from} moved to task #{task_id}: its reply follows" if created
                        else f"already in task #{task_id}")
            if action == "close":
                task = chat.own_task(self.rt, event, target)
                return f"task #{service.close_task(task.id, reason=f'closed by {event.user_id}').id} closed"
            return "unknown button"
        except Alter0Error as exc:
            return exc.message

    def _move_choices(self, event: ChannelEvent, job_id: str) -> str:
        job = Job.get_or_none(Job.id == _num(job_id))
        if job is None or job.user_id != event.user_id:
            return f"job {job_id} does not exist"
        tasks = [t for t in views.list_tasks("open", scope=job.scope, limit=9) if t.id != job.task_id][:8]
        if not tasks:
            return "no other open task to move it to (/move JOB N names any task)"
        pick = self._message(event, f"move:{job.id}", f"Move job #{job.id} to which task?")
        pick.payload["reply_markup"] = {"inline_keyboard": [
            [{"text": f"#{t.id} {t.title[:40]}", "callback_data": f"moveto:{job.id}:{t.id}"}] for t in tasks]}
        self.extra.append(pick)
        return "pick the task"

    # --- jobs ---------------------------------------------------------------------------------------
    def working(self, event: ChannelEvent, job: Job) -> list[Outgoing]:
        out = self._message(event, "working", chat.working_line(job))
        out.key = self.working_key(event)
        out.payload["reply_markup"] = _buttons([("Cancel", f"cancel:{job.id}")])
        return [out]

    def progress(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        payload = {"chat_id": event.payload["chat_id"], "message_id": int(working.result_id),
                   "text": chat.working_line(job),
                   "reply_markup": _buttons([("Cancel", f"cancel:{job.id}")])}
        return [Outgoing(f"progress:{PLATFORM}:{event.id}:{job.status}", "editMessageText", payload)]

    def outcome(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        body = chat.outcome_text(job)
        if job.state == S.DONE:
            buttons = [("Move…", f"move:{job.id}"), ("Close task", f"close:{job.task_id}")]
        else:
            buttons = [("Retry", f"retry:{job.id}")] + ([("Close task", f"close:{job.task_id}")] if job.task_id else [])
        round_ = int((job.finished_at or 0) * 1000)
        parts = split(body, LIMIT)
        out = []
        for i, part in enumerate(parts):
            item = self._message(event, f"reply:{round_}:{i}", part)
            item.payload["_bind"] = job.task_id
            item.payload["_rebind"] = bool(job.moved_from)  # a moved message's reply now answers in its new task
            if i == 0:
                item.payload["_edit_of"] = self.working_key(event)
            if i == len(parts) - 1:
                item.payload["reply_markup"] = _buttons(buttons)
            out.append(item)
        return out

    # --- notifications ------------------------------------------------------------------------------
    @classmethod
    def notifies(cls, cfg) -> bool:
        return bool(cfg["channels.telegram.notify_chat"])

    def notification(self, event: NotifyEvent) -> list[Outgoing]:
        """A one-line notice in ``channels.telegram.notify_chat``; a job started from that chat is answered
        there already, so it gets none."""
        chat = self.cfg["channels.telegram.notify_chat"]
        line = notices.for_chat(event, f"{PLATFORM}:{chat}") if chat else None
        if line is None:
            return []
        return [Outgoing(f"notify:{PLATFORM}:{event.id}", "sendMessage", {"chat_id": chat, "text": line[:LIMIT]})]

    # --- out ----------------------------------------------------------------------------------------
    def _message(self, event: ChannelEvent, kind: str, text: str) -> Outgoing:
        where = event.payload or {}
        payload: dict[str, Any] = {"chat_id": where.get("chat_id"), "text": text[:LIMIT]}
        if where.get("message_thread_id"):
            payload["message_thread_id"] = where["message_thread_id"]
        if where.get("message_id"):
            payload["reply_parameters"] = {"message_id": where["message_id"], "allow_sending_without_reply": True}
        return Outgoing(f"{kind}:{PLATFORM}:{event.id}", "sendMessage", payload)

    def _callback_answer(self, event: ChannelEvent, text: str) -> Outgoing:
        return Outgoing(f"callback:{PLATFORM}:{event.id}", "answerCallbackQuery",
                        {"callback_query_id": event.payload["callback_id"], "text": text[:200]})

    def send(self, delivery: ChannelDelivery) -> str | None:
        payload = {k: v for k, v in delivery.payload.items() if not k.startswith("_")}
        method = delivery.method
        ref = outbox.by_key(delivery.payload["_edit_of"]) if delivery.payload.get("_edit_of") else None
        if ref is not None and ref.result_id:
            edit = {"chat_id": payload["chat_id"], "message_id": int(ref.result_id), "text": payload["text"]}
            if "reply_markup" in payload:
                edit["reply_markup"] = payload["reply_markup"]
            try:
                return _message_id(self.api.call("editMessageText", edit)) or ref.result_id
            except Permanent:  # the "working…" message is gone: send the reply as a new message
                pass
        return _message_id(self.api.call(method, payload))

    def delivered(self, delivery: ChannelDelivery, result_id: str | None) -> None:
        task_id = delivery.payload.get("_bind")
        if task_id and result_id:  # a reply to this message goes to the task it answered
            threads.bind(f"{PLATFORM}:{delivery.payload['chat_id']}", f"reply:{result_id}", task_id,
                         replace=bool(delivery.payload.get("_rebind")))

    def close(self) -> None:
        self.api.close()


def _buttons(pairs: list[tuple[str, str]]) -> dict:
    return {"inline_keyboard": [[{"text": label, "callback_data": data} for label, data in pairs]]}


def _message_id(result: Any) -> str | None:
    return str(result["message_id"]) if isinstance(result, dict) and "message_id" in result else None


def _num(value: Any) -> int | None:
    try:
        return int(str(value).rsplit(":", 1)[-1])
    except ValueError:
        return None
