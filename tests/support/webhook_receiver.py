"""A real HTTP webhook receiver for the notification tests: it verifies each delivery's X-Alter0-Signature (the
HMAC-SHA256 of the raw body with the shared secret, compared in constant time) and records what it got; it can
answer 500 for a while, or be down (its port closed: connection refused) and come back on the same port."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Deliveries are recorded in arrival order: {event, delivery, body, signature_ok, at}."""

    def __init__(self, secret: str | None = "receiver-secret-123", port: int = 0):
        self.secret = secret
        self.lock = threading.Lock()
        self.got: list[dict] = []
        self.fail_with = 0  # answer this status instead of 200 while set
        self.server = None
        self.port = port
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        """Listen (again) on the same port."""
        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Close the port: senders get connection refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def verify(self, raw: bytes, header: str | None) -> bool:
        if not self.secret or not header:
            return False
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header)

    def accepted(self) -> list[dict]:
        with self.lock:
            return [g for g in self.got if g["status"] == 200]

    def deliveries(self, event: str | None = None) -> list[dict]:
        """Accepted deliveries (of ``event``)."""
        return [g for g in self.accepted() if event is None or g["event"] == event]

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.fail_with or 200
                entry = {"event": self.headers.get("X-Alter0-Event"), "delivery": self.headers.get("X-Alter0-Delivery"),
                         "signature_ok": receiver.verify(raw, self.headers.get("X-Alter0-Signature")),
                         "body": json.loads(raw or b"null"), "status": status, "at": time.time(), "path": self.path}
                with receiver.lock:
                    receiver.got.append(entry)
                answer = b'{"ok": true}' if status == 200 else b'{"error": "receiver failing"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.down()
