"""Bearer token on /api/*, a session login for the console when a token is set, CSRF on console forms."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from pathlib import Path

from flask import Flask, abort, request, session

from alter0.errors import Alter0Error

from .db import get_rt


class Unauthorized(Alter0Error):
    """The request lacks the API token (security.api_token / ALTER0_API_TOKEN)."""

    code, status = "unauthorized", 401
    headers = {"WWW-Authenticate": 'Bearer realm="alter0"'}


def api_token() -> str:
    return get_rt().cfg["security.api_token"]


def token_matches(given: str | None) -> bool:
    expected = api_token()
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def require_token() -> None:
    """before_request of the API: when a token is configured, demand ``Authorization: Bearer <token>``."""
    if not api_token():
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given.strip()):
        raise Unauthorized("this alter0 requires an API token: send 'Authorization: Bearer <token>' "
                           "(security.api_token / ALTER0_API_TOKEN)")


def csrf_token() -> str:
    """The session's CSRF token (made on first use); forms send it as csrf_token, scripts as X-CSRF-Token."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        abort(400, "the form's CSRF token is missing or stale; reload the page and try again")


def secret_key(output_dir: Path) -> str:
    """The session signing key, shared by every gunicorn worker through <output>/web/secret_key (0600)."""
    path = output_dir / "web" / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it right now
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def init_app(app: Flask) -> None:
    rt = app.extensions["alter0"]
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(rt.output_dir)
    app.jinja_env.globals["csrf_token"] = csrf_token
