"""A small synchronous Bot API client on httpx: one ``call(method, params)`` that maps the API's answers to
Transient (429 with ``retry_after``, 5xx, timeouts, connection errors) and Permanent (other 4xx) errors.

Why not python-telegram-bot or aiogram: both are asyncio frameworks that own the update loop and keep the
``getUpdates`` offset in memory (a restart either replays or drops everything pending). alter0 must save the
offset only after updates are in its inbox and filter stale updates on a cold start only; its processes are
synchronous threads. The five methods used are plain JSON over HTTPS, so a 60-line client is the smaller risk."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from ..base import Permanent, Transient

# httpx logs every request URL at INFO, and a Bot API URL holds the token: keep its logger quiet.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

#: Telegram's answer when an edit changes nothing: the edit is already there (a repeated delivery).
NOT_MODIFIED = "message is not modified"


class BotApi:
    """Calls ``<api_url>/bot<token>/<method>``; the token never appears in an error message."""

    def __init__(self, api_url: str, token: str, timeout: float):
        self.token = token
        self.timeout = timeout
        self.client = httpx.Client(base_url=f"{api_url.rstrip('/')}/bot{token}/", timeout=timeout)

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> Any:
        """The method's ``result``; Transient or Permanent on failure."""
        try:
            resp = self.client.post(method, json=params or {}, timeout=timeout or self.timeout)
        except httpx.TimeoutException:
            raise Transient(f"{method}: timed out") from None
        except httpx.TransportError as exc:
            raise Transient(f"{method}: {type(exc).__name__}: {self._clean(str(exc))}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and body.get("ok"):
            return body.get("result")
        description = self._clean(str(body.get("description") or resp.reason_phrase))
        if resp.status_code == 429:
            retry_after = (body.get("parameters") or {}).get("retry_after")
            raise Transient(f"{method}: 429 {description}", retry_after=float(retry_after or 1))
        if resp.status_code >= 500 or resp.status_code in (408, 409):
            raise Transient(f"{method}: {resp.status_code} {description}")
        if resp.status_code == 400 and NOT_MODIFIED in description:
            return True
        raise Permanent(f"{method}: {resp.status_code} {description}")

    def _clean(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def close(self) -> None:
        self.client.close()
