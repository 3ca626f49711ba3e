"""A synchronous face on matrix-nio's ``AsyncClient``: one private event loop on its own thread runs every request,
so the channel's poll thread (a long /sync) and its delivery loop (sends, edits, joins) call it concurrently as plain
functions. nio's answers map to Transient (429 with ``retry_after``, 5xx, timeouts, connection errors) and Permanent
(other 4xx) errors; nio's own retry loops are switched off, the outbox owns retries.

Why matrix-nio: maintained, typed, and its ``AsyncClient`` is a thin request layer (no bot framework owning the
loop or the sync token); plain ``matrix-nio`` without libolm (end-to-end encryption is not used)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable

import nio

from ..base import Permanent, Transient

# aiohttp/nio log request URLs and sync bodies at INFO/DEBUG; an access token must never reach a log.
for name in ("nio", "aiohttp", "peewee"):
    logging.getLogger(name).setLevel(logging.WARNING)


class MatrixClient:
    """Logged in with an access token, or with a password (``device_id`` kept, so transaction ids stay
    recognised across restarts)."""

    def __init__(self, homeserver: str, user_id: str, access_token: str = "", password: str = "",
                 device_id: str = "", timeout: float = 10.0):
        self.timeout = timeout
        self.password = password
        self.user_id = user_id  # nio sets its own ``user_id`` only at login
        self.secrets = [s for s in (access_token, password) if s]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="matrix-loop", daemon=True)
        self.thread.start()
        config = nio.AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=timeout,
                                       encryption_enabled=False, store_sync_tokens=False)
        self.client = self._run(self._make(homeserver.rstrip("/"), user_id, device_id, config))
        if access_token:
            self.client.access_token = access_token
        self.logged_in = bool(access_token)

    @staticmethod
    async def _make(homeserver, user_id, device_id, config) -> nio.AsyncClient:
        return nio.AsyncClient(homeserver, user_id, device_id=device_id or None, config=config)

    def _run(self, coro: Awaitable, wait: float | None = None) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=(wait or self.timeout) + 5)
        except (TimeoutError, asyncio.TimeoutError):
            future.cancel()
            raise Transient("matrix: request timed out") from None
        except (nio.exceptions.LocalProtocolError,) as exc:
            raise Permanent(f"matrix: {self._clean(str(exc))}") from None
        except Exception as exc:  # aiohttp connection errors and the like: the homeserver is unreachable
            if isinstance(exc, (Transient, Permanent)):
                raise
            raise Transient(f"matrix: {type(exc).__name__}: {self._clean(str(exc))}") from None

    def call(self, what: str, method: str, *args, wait: float | None = None, **kwargs) -> Any:
        """``AsyncClient.<method>(*args, **kwargs)``, waiting up to ``wait`` seconds (default: the request
        timeout): its response, or Transient / Permanent."""
        self.login()
        return self._check(what, self._run(getattr(self.client, method)(*args, **kwargs), wait))

    def login(self) -> None:
        if self.logged_in:
            return
        if not self.password:
            raise Permanent("matrix: neither an access token nor a password is set")
        self._check("login", self._run(self.client.login(self.password, device_name="alter0")))
        self.logged_in = True

    def gap(self, room_id: str, start: str, since: str, most: int = 1000) -> list[dict]:
        """The raw events of ``room_id`` between sync position ``since`` and ``start`` (a limited timeline's
        ``prev_batch``), oldest first: what a restart's /sync left out because more arrived than it returns."""
        out: list[dict] = []
        token = start
        while token and len(out) < most:
            page = self.call("messages", "room_messages", room_id, start=token, end=since,
                             direction=nio.MessageDirection.back, limit=100)
            out += [e.source for e in page.chunk]
            if not page.chunk or page.end == token:
                break
            token = page.end
        return list(reversed(out))

    def _check(self, what: str, resp: Any) -> Any:
        if not isinstance(resp, nio.ErrorResponse):
            return resp
        status = resp.transport_response.status if resp.transport_response is not None else 0
        message = f"{what}: {status or ''} {resp.status_code or ''} {self._clean(resp.message or '')}".strip()
        if status == 429 or resp.status_code == "M_LIMIT_EXCEEDED":
            raise Transient(message, retry_after=(resp.retry_after_ms or 1000) / 1000)
        if status >= 500 or status in (0, 408):
            raise Transient(message)
        if resp.status_code == "M_UNKNOWN_TOKEN" and self.password:  # a password login expired: log in again
            self.logged_in = False
            raise Transient(message)
        raise Permanent(message)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        try:
            self._run(self.client.close(), wait=5)
        except (Transient, Permanent):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
