"""One error shape for the API: {"error": {"code", "message"}} with the status the error carries."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from alter0.database import storage_error
from alter0.errors import Alter0Error

log = logging.getLogger(__name__)
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
              429: "too_many_requests"}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/metrics", "/health") or \
        request.accept_mimetypes.best == "application/json"


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    """The API's error document, or the console's error page for browsers."""
    if not wants_json():
        return render_template("error.html", status=status, code=code, message=message), status, headers or {}
    return jsonify(error={"code": code, "message": message, **extra}, **extra), status, headers or {}


def handle_alter0(exc: Alter0Error):
    status = 413 if exc.code == "too_large" else exc.status
    if status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return error_response(status, exc.code, exc.message, getattr(exc, "headers", None), **(getattr(exc, "data", None) or {}))


def handle_http(exc: HTTPException):
    code = HTTP_CODES.get(exc.code or 500, "http_error")
    headers = dict(exc.get_headers()) if exc.code == 405 else {}
    headers.pop("Content-Type", None)
    return error_response(exc.code or 500, code, exc.description or exc.name, headers)


def handle_unexpected(exc: Exception):
    known = storage_error(exc)
    if known is not None:  # the database or the output directory: 503 with the cause, one log line
        log.error("storage_unavailable on %s %s: %s", request.method, request.path, known.message)
        return error_response(known.status, known.code, known.message)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the web log")


def init_app(app: Flask) -> None:
    app.register_error_handler(Alter0Error, handle_alter0)
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(Exception, handle_unexpected)
