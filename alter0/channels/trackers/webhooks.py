"""An incoming tracker webhook judged: size, repository, signature (HMAC-SHA256 of the raw body with that
repository's secret, compared in constant time), sender allowlist, then the inbox event it makes.

Forgejo signs with ``X-Forgejo-Signature`` (Gitea: ``X-Gitea-Signature``), the hex digest alone; GitHub with
``X-Hub-Signature-256: sha256=<hex>``. The web front end (``web/hooks.py``) audits refusals, records the event
and answers; nothing here touches HTTP or the database."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Mapping

from ..base import Incoming
from .events import Rules, from_webhook

#: platform -> (signature headers, event-type headers, delivery-id headers), first present wins.
HEADERS = {
    "forgejo": (("X-Forgejo-Signature", "X-Gitea-Signature"), ("X-Forgejo-Event", "X-Gitea-Event"),
                ("X-Forgejo-Delivery", "X-Gitea-Delivery")),
    "github": (("X-Hub-Signature-256",), ("X-GitHub-Event",), ("X-GitHub-Delivery",)),
}


@dataclass
class Verdict:
    """What to answer: ``status`` and a message; ``event`` to record when accepted."""

    status: int
    code: str
    message: str
    repo: str = ""
    sender: str = ""
    delivery: str = ""
    event: Incoming | None = None

    @property
    def refused(self) -> bool:
        return self.status >= 400


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` (what the tracker sends, without GitHub's ``sha256=`` prefix)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _first(headers: Mapping[str, str], names) -> str:
    for name in names:
        value = headers.get(name)
        if value:
            return value.strip()
    return ""


def judge(cfg, platform: str, headers: Mapping[str, str], body: bytes) -> Verdict:
    """Decide on one delivery (see the module docstring); never raises on bad input."""
    sig_names, event_names, delivery_names = HEADERS[platform]
    delivery = _first(headers, delivery_names)[:100]
    limit = cfg[f"channels.{platform}.max_payload_bytes"]
    if len(body) > limit:
        return Verdict(413, "too_large", f"the delivery is over {limit} bytes (channels.{platform}.max_payload_bytes)",
                       delivery=delivery)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return Verdict(400, "bad_json", "the delivery's body is not a JSON object", delivery=delivery)
    repo = str(((data.get("repository") or {}) if isinstance(data.get("repository"), dict) else {})
               .get("full_name") or "")[:200]
    sender = str(((data.get("sender") or {}) if isinstance(data.get("sender"), dict) else {}).get("login") or "")[:200]
    rules = Rules.of(cfg, platform)
    secrets = {k.lower(): v for k, v in cfg[f"channels.{platform}.webhook_secrets"].items()}
    if rules.repo(repo) is None or not secrets.get(repo.lower()):
        return Verdict(404, "unknown_repository", f"repository {repo!r} is not configured here (channels.{platform}"
                       ".repos and webhook_secrets)", repo, sender, delivery)
    given = _first(headers, sig_names)
    if not given:
        return Verdict(401, "unsigned", f"the delivery carries no {' or '.join(sig_names)} header: set the "
                       "webhook's secret", repo, sender, delivery)
    if platform == "github":
        scheme, _, given = given.partition("=")
        given = given if scheme == "sha256" else ""
    if not hmac.compare_digest(given.lower().encode(), sign(secrets[repo.lower()], body).encode()):
        return Verdict(401, "bad_signature", "the delivery's signature does not match this repository's secret",
                       repo, sender, delivery)
    event_type = _first(headers, event_names)
    if event_type == "ping":
        return Verdict(200, "pong", "signature verified", repo, sender, delivery)
    event, why = from_webhook(rules, event_type, data)
    if event is None:
        return Verdict(200, "ignored", why, repo, sender, delivery)
    if event.kind == "message" and not rules.allowed(repo, event.user_id):  # closing is the tracker's permission
        return Verdict(403, "not_allowed", f"{event.user_id or 'this sender'} is not on {repo}'s allowed_users: "
                       "nothing was started", repo, sender, delivery, event)
    event.payload["delivery"] = delivery
    return Verdict(202, "accepted", "recorded", repo, sender, delivery, event)
