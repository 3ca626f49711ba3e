"""Outgoing webhooks: each ``notify.webhooks`` target gets the feed events it asked for as a signed JSON POST
(``X-Alter0-Signature: sha256=<hex HMAC of the raw body>``, ``X-Alter0-Event``, ``X-Alter0-Delivery`` stable
across retries), sent through the outbox (one lane per target: in order, retried with backoff until a 2xx);
their delivery log and per-target status; ``alter0 webhook test``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .. import faults
from ..config import NOTIFY_EVENTS, Config
from ..errors import InputError
from ..models import ChannelDelivery, NotifyEvent
from ..secrets import mask_url
from ..channels.base import Outgoing, Permanent, Sender, Transient

PREFIX = "webhook:"
USER_AGENT = "alter0-webhook/1"
#: Characters of a receiver's answer kept in the delivery log.
ANSWER_CHARS = 300


@dataclass(frozen=True)
class Target:
    """One configured receiver."""

    url: str
    events: tuple[str, ...]
    secret: str

    @property
    def id(self) -> str:
        """A short stable name of the target (from its URL): its outbox platform is ``webhook:<id>``."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:10]

    @property
    def platform(self) -> str:
        return PREFIX + self.id

    @property
    def shown_url(self) -> str:
        """The URL as status pages show it (password and query masked: they often carry a key)."""
        return mask_url(self.url)


def targets(cfg: Config) -> list[Target]:
    return [Target(t["url"], tuple(t.get("events") or NOTIFY_EVENTS), t["secret"]) for t in cfg["notify.webhooks"]]


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; InputError naming the problem otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{url!r} is not an http:// or https:// URL with a host")
    return url


def raw_body(body: dict) -> bytes:
    """The bytes sent (and signed): compact JSON, keys sorted, UTF-8."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, raw: bytes) -> str:
    """The X-Alter0-Signature value: ``sha256=`` and the hex HMAC-SHA256 of the raw body keyed by the secret."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def body_of(event: NotifyEvent, delivery_id: str) -> dict:
    """The JSON document a receiver gets for one feed event."""
    return {"id": delivery_id, "event": event.kind, "created_at": event.created_at, **event.payload}


def delivery_id(target: Target, event: NotifyEvent) -> str:
    return f"{event.id}-{target.id}"


def outgoing(target: Target, event: NotifyEvent) -> list[Outgoing]:
    """The outbox row for ``event`` if ``target`` asked for its kind (key unique per event and target)."""
    if event.kind not in target.events:
        return []
    did = delivery_id(target, event)
    return [Outgoing(f"notify:{target.platform}:{event.id}", "POST",
                     {"url": target.url, "event": event.kind, "delivery": did, "body": body_of(event, did)})]


def post(url: str, raw: bytes, event: str, delivery: str, secret: str | None, timeout: float) -> httpx.Response:
    """POST one signed body; the response if 2xx, else Transient (connection errors, timeouts, 408, 429, 5xx)
    or Permanent (redirects, other 4xx)."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Alter0-Event": event,
               "X-Alter0-Delivery": delivery}
    if secret:
        headers["X-Alter0-Signature"] = signature(secret, raw)
    try:
        resp = httpx.post(url, content=raw, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        raise Transient(f"no answer within {timeout:g}s") from None
    except httpx.TransportError as exc:
        raise Transient(_transport_error(exc)) from None
    answer = f"{resp.status_code} {resp.reason_phrase}: {resp.text[:ANSWER_CHARS]}".rstrip(": ")
    if 200 <= resp.status_code < 300:
        return resp
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        after = resp.headers.get("Retry-After", "")
        raise Transient(answer, retry_after=float(after) if after.isdigit() else None)
    raise Permanent(answer)


def _transport_error(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.rsplit("] ", 1)[-1][:200]


class WebhookSender(Sender):
    """The outbox's view of one target: its rows go out one at a time, in feed order."""

    def __init__(self, cfg: Config, target: Target):
        super().__init__(cfg)
        self.target = target
        self.platform = target.platform

    def lane(self, delivery: ChannelDelivery) -> object:
        return self.platform  # one lane: a failed delivery holds back the later ones (in order per target)

    def send(self, delivery: ChannelDelivery) -> str | None:
        p = delivery.payload
        faults.kill_point("notify_send")
        resp = post(self.target.url, raw_body(p["body"]), p["event"], p["delivery"], self.target.secret,
                    self.cfg["channels.delivery.request_timeout_sec"])
        return f"{resp.status_code} {resp.text[:60]}".strip()


def send_test(url: str, secret: str | None, timeout: float) -> httpx.Response:
    """POST a signed ``test`` event to ``url`` now (no outbox); the 2xx response, else Transient/Permanent."""
    check_url(url)
    did = f"test-{int(time.time() * 1000)}"
    body = {"id": did, "event": "test", "created_at": time.time(),
            "message": "alter0 webhook test: if you can read this, the receiver works"}
    return post(url, raw_body(body), "test", did, secret, timeout)


def snapshot(cfg: Config) -> list[dict]:
    """Per target: URL (masked), events, backlog, delivered and failed counts, last delivery, last error."""
    out = []
    for t in targets(cfg):
        rows = ChannelDelivery.select().where(ChannelDelivery.platform == t.platform)
        last_ok = rows.where(ChannelDelivery.state == "delivered").order_by(ChannelDelivery.id.desc()).first()
        errored = rows.where(ChannelDelivery.last_error.is_null(False)).order_by(ChannelDelivery.id.desc()).first()
        out.append({"target": t.id, "url": t.shown_url, "events": list(t.events),
                    "backlog": rows.where(ChannelDelivery.state == "pending").count(),
                    "delivered": rows.where(ChannelDelivery.state == "delivered").count(),
                    "failed": rows.where(ChannelDelivery.state == "failed").count(),
                    "last_delivery_at": last_ok.delivered_at if last_ok else None,
                    "last_delivery": last_ok.payload["delivery"] if last_ok else None,
                    "last_error": errored.last_error if errored else None,
                    "last_error_delivery": errored.payload["delivery"] if errored else None,
                    "last_error_resolved": bool(errored and errored.state == "delivered")})
    return out


def log(cfg: Config, limit: int = 50) -> list[dict]:
    """The newest deliveries to every configured target (the console's and ``alter0 webhook log``'s list)."""
    names = {t.platform: t for t in targets(cfg)}
    rows = (ChannelDelivery.select().where(ChannelDelivery.platform.startswith(PREFIX))
            .order_by(ChannelDelivery.id.desc()).limit(limit))
    return [{"delivery": r.payload.get("delivery"), "event": r.payload.get("event"),
             "target": r.platform[len(PREFIX):],
             "url": names[r.platform].shown_url if r.platform in names else "(no longer configured)",
             "state": r.state, "attempts": r.attempts, "answer": r.result_id, "last_error": r.last_error,
             "created_at": r.created_at, "delivered_at": r.delivered_at} for r in rows]
