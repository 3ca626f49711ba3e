"""Incoming tracker webhooks: ``POST /hooks/forgejo`` (Forgejo and Gitea) and ``POST /hooks/github``.

Outside the /api token rule: the per-repository HMAC signature is their authentication (a tracker cannot send a
bearer token). Every refusal (unsigned, bad signature, unknown repository, sender not allowed, oversize, replay) is
one audit line; an accepted delivery is recorded in the channel inbox and answered at once (202), the channel
process (``alter0 channel forgejo|github``) does the work."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from alter0.audit import record as audit
from alter0.channels import inbox
from alter0.channels.trackers.channel import is_work
from alter0.channels.trackers.webhooks import HEADERS, Verdict, judge
from alter0.models import ChannelEvent

from .db import get_rt

bp = Blueprint("hooks", __name__, url_prefix="/hooks")


def _audit(platform: str, verdict: Verdict) -> None:
    rt = get_rt()
    audit(rt.output_dir, rt.cfg.secrets(), "refused_webhook", who=verdict.sender or None,
          source=request.remote_addr or "", what=f"POST /hooks/{platform} {verdict.repo or '?'}: {verdict.message}",
          allowed=False, reason=verdict.code, delivery=verdict.delivery)


def _answer(platform: str, verdict: Verdict):
    if verdict.refused:
        _audit(platform, verdict)
        body = {"error": {"code": verdict.code, "message": verdict.message}}
    else:
        body = {"status": verdict.code, "message": verdict.message}
        if verdict.status == 202:
            body["event"] = verdict.event.event_id
    return jsonify(body), verdict.status


@bp.post("/<platform>")
def receive(platform: str):
    if platform not in HEADERS:
        return jsonify({"error": {"code": "not_found", "message": f"no tracker called {platform[:40]!r}"}}), 404
    limit = get_rt().cfg[f"channels.{platform}.max_payload_bytes"]
    if (request.content_length or 0) > limit:
        return _answer(platform, Verdict(413, "too_large", f"the delivery is over {limit} bytes "
                                         f"(channels.{platform}.max_payload_bytes)"))
    body = request.stream.read(limit + 1)
    verdict = judge(get_rt().cfg, platform, request.headers, body)
    if verdict.code == "not_allowed" and not is_work(platform, verdict.event):
        verdict = Verdict(200, "ignored", "a comment on an issue no task works on", verdict.repo, verdict.sender,
                          verdict.delivery)  # people talking among themselves: not a refusal
    if verdict.status == 202 and not inbox.record(platform, [verdict.event]):
        verdict = _duplicate(platform, verdict)
    return _answer(platform, verdict)


def _duplicate(platform: str, verdict: Verdict) -> Verdict:
    """An event already in the inbox: the same delivery again is a replay (409, audited); another delivery about
    the same issue or comment (a later label change, reconciliation got there first) changes nothing (200)."""
    first = ChannelEvent.get_or_none(ChannelEvent.platform == platform,
                                     ChannelEvent.event_id == verdict.event.event_id)
    if verdict.delivery and first is not None and (first.payload or {}).get("delivery") != verdict.delivery:
        return Verdict(200, "duplicate", f"event {verdict.event.event_id} is already recorded: nothing to do",
                       verdict.repo, verdict.sender, verdict.delivery)
    return Verdict(409, "replayed", f"delivery {verdict.delivery or '?'} (event {verdict.event.event_id}) was "
                   "already received: ignored", verdict.repo, verdict.sender, verdict.delivery)
