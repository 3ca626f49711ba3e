"""Liveness (/health, never behind the token, for probes) and Prometheus metrics (/metrics, token when set)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from alter0.database import unwritable_reason
from alter0.models import db

from . import metrics
from .db import get_rt
from .security import require_token

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """The process is up, the database answers and can take a write (503 otherwise, with the cause)."""
    started = time.monotonic()
    try:
        db.execute_sql("SELECT 1").fetchone()
    except Exception as exc:
        return jsonify(ok=False, db=False, error={"code": "db_unreachable", "message": str(exc)}), 503
    db_ms = round((time.monotonic() - started) * 1000, 2)
    reason = unwritable_reason(get_rt().cfg)
    if reason:
        return jsonify(ok=False, db=True, writable=False, db_ms=db_ms,
                       error={"code": "storage_unavailable", "message": reason}), 503
    return jsonify(ok=True, db=True, writable=True, db_ms=db_ms)


@bp.get("/metrics")
def prometheus():
    require_token()
    return Response(metrics.render(get_rt().cfg), mimetype="text/plain",
                    headers={"Content-Type": "text/plain; version=0.0.4"})
