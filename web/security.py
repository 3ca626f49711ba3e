"""Who is calling: a bearer token on /api/*, a token login for the console, CSRF on console forms.

With no token configured (no security.api_token, no live ``alter0 token``) a caller is the tokenless
loopback principal: it may name any user and is never admin. Otherwise every request must prove a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import time
from pathlib import Path

from flask import Flask, abort, g, request, session

from alter0.errors import Alter0Error
from alter0.principals import Principal, authenticate, by_digest, digest, tokens_configured

from .db import get_rt
from .guard import audit_refusal, refuse

LOOPBACK = Principal(None, False, "loopback")


class Unauthorized(Alter0Error):
    """The request lacks a valid API token (security.api_token or an ``alter0 token``)."""

    code, status = "unauthorized", 401
    headers = {"WWW-Authenticate": 'Bearer realm="alter0"'}


def api_token() -> str:
    return get_rt().cfg["security.api_token"]


def tokens_required() -> bool:
    """Whether callers must prove a token (one is configured)."""
    if "tokens_required" not in g:
        g.tokens_required = tokens_configured(api_token())
    return g.tokens_required


def bearer() -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def principal() -> Principal | None:
    """The caller this request proves: by bearer token, the console's login, or tokenless loopback; else None."""
    if "principal" not in g:
        g.principal = _resolve()
    return g.principal


def _resolve() -> Principal | None:
    cfg = get_rt().cfg
    given = bearer()
    if given:
        found = authenticate(given, cfg)
        if found is None:
            refuse(Unauthorized("the API token is unknown, revoked or expired (see `alter0 token list`)"),
                   "bad bearer token")
        return found
    if session.get("auth"):
        found = by_digest(session["auth"], cfg)
        if found is not None:
            return found
        session.pop("auth", None)
    if tokens_required() or not is_loopback_address(request.remote_addr or ""):
        return None  # tokenless mode serves this machine only, whatever the bind
    return LOOPBACK


def is_loopback_address(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return addr.startswith("unix:") or addr == ""


def require_token() -> None:
    """before_request of the API: the request must prove a principal when a token is configured."""
    if principal() is None:
        refuse(Unauthorized("this alter0 requires an API token: send 'Authorization: Bearer <token>' "
                            "(security.api_token, or one made with `alter0 token create --user YOU`)"),
               "no token")


def login(token: str) -> bool:
    """The console's login: keep the token's digest in the session if it proves a principal."""
    found = authenticate(token, get_rt().cfg) if token else None
    if found is None:
        audit_refusal("unauthorized", "console login with an unknown, revoked or expired token")
        return False
    session["auth"] = digest(token)
    g.principal = found
    return True


def acting_as(claimed: object) -> str | None:
    """The user id this request runs as (``claimed`` if the caller may use it); a refusal is audited."""
    me = principal()
    try:
        return me.acting_as(claimed, None)
    except Alter0Error as exc:
        audit_refusal(exc.code, f"acting as {str(claimed)[:200]!r}", me.user_id)
        raise


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
