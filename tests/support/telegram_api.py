"""A local stand-in of the Telegram Bot API in the official method and object shapes (getUpdates with offset and
long-poll timeout, sendMessage, editMessageText, sendChatAction, answerCallbackQuery; errors as
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``), with faults the tests switch on:
a 429 storm, an outage (502), and methods held (the request hangs) so a channel can be killed mid-send."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT_ID = 777000
TOKEN = f"{BOT_ID}:TEST-TOKEN-abcdefghijklmnop"


class BotApiStub:
    """The bot's side of Telegram: queued updates and the chats' messages as the bot left them."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.lock = threading.Condition()
        self.updates: list[dict] = []
        self.next_update = 5000
        self.next_message = 100
        self.messages: dict[tuple[int, int], dict] = {}  # (chat, message id) -> message sent by the bot
        self.calls: list[tuple[float, str, dict]] = []
        self.storm = 0  # the next N send/edit calls answer 429
        self.retry_after = 1
        self.down_until = 0.0  # calls answer 502 until then (every method, or only those in ``down_methods``)
        self.down_methods: set[str] | None = None
        self.hold = None  # (method, params) -> True: that request hangs until ``released`` is set
        self.released = threading.Event()
        self.delivered_log: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # --- what the user does -------------------------------------------------------------------------
    def user_message(self, text: str | None, user: int, chat: int | None = None, *, chat_type: str = "private",
                     date: float | None = None, topic: int | None = None, reply_to: int | None = None,
                     kind: str = "message", extra: dict | None = None) -> int:
        """Queue a message from ``user`` (a reply to bot message ``reply_to``, in forum topic ``topic``)."""
        chat = chat if chat is not None else user
        with self.lock:
            self.next_message += 1
            msg = {"message_id": self.next_message, "date": int(date or time.time()),
                   "from": {"id": user, "is_bot": False, "first_name": f"u{user}"},
                   "chat": {"id": chat, "type": chat_type}}
            if text is not None:
                msg["text"] = text
            if topic is not None:
                msg.update(message_thread_id=topic, is_topic_message=True)
                msg["chat"]["is_forum"] = True
            if reply_to is not None:
                msg["reply_to_message"] = dict(self.messages[(chat, reply_to)], message_id=reply_to)
            msg.update(extra or {})
            return self._queue({kind: msg})

    def press(self, user: int, chat: int, message_id: int, data: str) -> int:
        """Press an inline button of a bot message."""
        with self.lock:
            msg = dict(self.messages[(chat, message_id)], message_id=message_id)
            return self._queue({"callback_query": {"id": f"cq{self.next_update}", "from": {"id": user, "is_bot": False,
                                "first_name": "u"}, "message": msg, "chat_instance": "1", "data": data}})

    def redeliver(self, update_id: int) -> None:
        """Put an already delivered update back (as a crashed Telegram front end might)."""
        with self.lock:
            update = next(u for u in self.delivered_log if u["update_id"] == update_id)
            self.updates.append(update)
            self.updates.sort(key=lambda u: u["update_id"])
            self.lock.notify_all()

    def _queue(self, body: dict) -> int:
        self.next_update += 1
        self.updates.append({"update_id": self.next_update, **body})
        self.delivered_log.append(self.updates[-1])
        self.lock.notify_all()
        return self.next_update

    # --- what the tests read ------------------------------------------------------------------------
    def chat(self, chat: int) -> list[dict]:
        """The bot's messages in ``chat`` as they stand now (after edits), oldest first."""
        with self.lock:
            return [dict(m, message_id=mid) for (c, mid), m in sorted(self.messages.items()) if c == chat]

    def texts(self, chat: int) -> list[str]:
        return [m["text"] for m in self.chat(chat)]

    def count(self, method: str) -> int:
        return sum(1 for _, m, _ in self.calls if m == method)

    # --- the API ------------------------------------------------------------------------------------
    def call(self, method: str, p: dict) -> tuple[int, dict]:
        self.calls.append((time.time(), method, p))
        if time.time() < self.down_until and (self.down_methods is None or method in self.down_methods):
            return 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}
        if self.hold is not None and self.hold(method, p):
            self.released.wait(120)
        if method in ("sendMessage", "editMessageText") and self.storm > 0:
            self.storm -= 1
            return 429, {"ok": False, "error_code": 429, "description":
                         f"Too Many Requests: retry after {self.retry_after}",
                         "parameters": {"retry_after": self.retry_after}}
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        return handler(p)

    def _ok(self, result) -> tuple[int, dict]:
        return 200, {"ok": True, "result": result}

    def _bad(self, description: str) -> tuple[int, dict]:
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}

    def _getUpdates(self, p: dict):
        deadline = time.time() + min(float(p.get("timeout", 0)), 30)
        with self.lock:
            if "offset" in p:
                self.updates = [u for u in self.updates if u["update_id"] >= int(p["offset"])]
            while not self.updates and time.time() < deadline:
                self.lock.wait(max(0.0, deadline - time.time()))
            return self._ok(self.updates[:int(p.get("limit", 100))])

    def _sendMessage(self, p: dict):
        text = p.get("text", "")
        if not text:
            return self._bad("message text is empty")
        if len(text) > 4096:
            return self._bad("message is too long")
        with self.lock:
            self.next_message += 1
            msg = {"date": int(time.time()), "chat": {"id": p["chat_id"], "type": "private"},
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "alter0"}, "text": text,
                   "reply_markup": p.get("reply_markup"), "message_thread_id": p.get("message_thread_id"),
                   "reply_to": (p.get("reply_parameters") or {}).get("message_id"), "edits": 0}
            self.messages[(p["chat_id"], self.next_message)] = msg
            return self._ok(dict(msg, message_id=self.next_message))

    def _editMessageText(self, p: dict):
        with self.lock:
            msg = self.messages.get((p.get("chat_id"), p.get("message_id")))
            if msg is None:
                return self._bad("message to edit not found")
            if len(p.get("text", "")) > 4096:
                return self._bad("MESSAGE_TOO_LONG")
            if msg["text"] == p.get("text") and msg.get("reply_markup") == p.get("reply_markup"):
                return self._bad("message is not modified: specified new message content and reply markup "
                                 "are exactly the same as a current content and reply markup of the message")
            msg.update(text=p["text"], reply_markup=p.get("reply_markup"), edits=msg["edits"] + 1)
            return self._ok(dict(msg, message_id=p["message_id"]))

    def _sendChatAction(self, p: dict):
        return self._ok(True)

    def _answerCallbackQuery(self, p: dict):
        return self._ok(True)

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                prefix = f"/bot{stub.token}/"
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    params = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    params = None
                if not self.path.startswith(prefix):
                    status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                elif params is None:
                    status, body = 400, {"ok": False, "error_code": 400, "description": "Bad Request: bad JSON"}
                else:
                    status, body = stub.call(self.path[len(prefix):], params)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def channel_config(stub: BotApiStub, **telegram) -> dict:
    """An install's ``channels`` section pointing the Telegram channel at ``stub`` (the token comes from the
    environment, as a secret should)."""
    return {"channels": {"telegram": {"api_url": stub.url, "allowed_users": [42], "allowed_chats": [-100500],
                                      "poll_timeout_sec": 1, **telegram}, "delivery": {"max_delay_sec": 2}}}


def start_channel(env, stub: BotApiStub, name: str = "channel"):
    """Run the real ``alter0 channel telegram`` process of ``env`` until it has polled ``stub``."""
    from .helpers import BIN, wait_until
    env.env["ALTER0_TELEGRAM_TOKEN"] = stub.token
    before = stub.count("getUpdates")
    proc = env.spawn([str(BIN / "alter0"), "channel", "telegram"], f"{name}-{len(env.procs)}")
    wait_until(lambda: stub.count("getUpdates") > before or proc.poll() is not None, 30, "the channel's first poll")
    assert proc.poll() is None, env.logs()
    return proc
