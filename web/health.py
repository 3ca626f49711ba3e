"""Liveness (/health, never behind the token, for probes) and Prometheus metrics (/metrics, token when set)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from alter0.models import db

from . import metrics
from .db import get_rt
from .security import require_token

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """The process is up and the database answers."""
    started = time.monotonic()
    try:
        db.execute_sql("SELECT 1").fetchone()
    except Exception as exc:
        return jsonify(ok=False, db=False, error={"code": "db_unreachable", "message": str(exc)}), 503
    return jsonify(ok=True, db=True, db_ms=round((time.monotonic() - started) * 1000, 2))


@bp.get("/metrics")
def prometheus():
    require_token()
    return Response(metrics.render(get_rt().cfg), mimetype="text/plain",
                    headers={"Content-Type": "text/plain; version=0.0.4"})
