"""Telegram ``Update`` objects → ``Incoming`` events: who, which chat, which thread (forum topic or a reply to
one of the bot's messages), what kind (text, command, button, edit, unsupported content)."""

from __future__ import annotations

from typing import Any

from ..base import Incoming

PLATFORM = "telegram"


def channel_id(chat_id: Any) -> str:
    return f"{PLATFORM}:{chat_id}"


def user_id(from_id: Any) -> str:
    return f"{PLATFORM}:{from_id}"


def thread_key(msg: dict) -> str | None:
    """``topic:<id>`` in a forum topic; ``reply:<message id>`` for a reply to a message of the bot."""
    if msg.get("is_topic_message") and msg.get("message_thread_id"):
        return f"topic:{msg['message_thread_id']}"
    replied = msg.get("reply_to_message") or {}
    if replied and (replied.get("from") or {}).get("is_bot"):
        return f"reply:{replied['message_id']}"
    return None


def _where(msg: dict) -> dict:
    """What answering needs: the chat, the topic, the message to reply to."""
    out = {"chat_id": msg["chat"]["id"], "chat_type": msg["chat"].get("type", ""), "message_id": msg["message_id"]}
    if msg.get("is_topic_message") and msg.get("message_thread_id"):
        out["message_thread_id"] = msg["message_thread_id"]
    return out


def parse(update: dict) -> Incoming:
    """One update as an inbox event (kind ``other`` for updates alter0 does not act on)."""
    uid = str(update["update_id"])
    if "callback_query" in update:
        cq = update["callback_query"]
        msg = cq.get("message") or {"chat": {"id": cq["from"]["id"]}, "message_id": 0}
        payload = dict(_where(msg), callback_id=cq["id"])
        return Incoming(uid, "callback", user_id(cq["from"]["id"]), channel_id(msg["chat"]["id"]),
                        thread_key(msg), str(cq.get("data", ""))[:200], str(msg.get("message_id")), None, payload)
    for field, kind in (("message", None), ("edited_message", "edit")):
        msg = update.get(field)
        if msg is None or "from" not in msg:
            continue
        text = msg.get("text")
        if kind is None:
            kind = "message" if text is not None else "unsupported"
            if text is not None and text.startswith("/"):
                kind = "command"
        return Incoming(uid, kind, user_id(msg["from"]["id"]), channel_id(msg["chat"]["id"]), thread_key(msg),
                        text or "", str(msg["message_id"]), float(msg.get("date", 0)), _where(msg))
    return Incoming(uid, "other", payload={})
