"""alter0's HTTP front end: JSON API, web console and health endpoints. It enqueues and reads; it never runs a stage."""

from __future__ import annotations

from typing import Any

from flask import Flask

from alter0.runtime import Runtime, get_runtime, set_runtime


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app: defaults, then ``test_config``; one Runtime per process (``ALTER0_RUNTIME`` to inject)."""
    app = Flask(__name__)
    app.config.from_mapping(ALTER0_RUNTIME=None, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    if test_config:
        app.config.update(test_config)
    rt: Runtime = app.config["ALTER0_RUNTIME"] or get_runtime()
    set_runtime(rt)
    rt.open_queue()  # at start, not on the first submit (after its job is committed)
    app.extensions["alter0"] = rt
    if not app.config.get("TESTING"):  # each gunicorn worker competes for the notifier lease (one acts)
        from alter0.notify import notifier
        notifier.start(rt.cfg, "web")
    # A JSON-escaped body may be up to 6x its text; the content limit itself is checked by service.submit.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = rt.cfg["task.max_content_bytes"] * 6 + 65536
    app.json.sort_keys = False
    app.json.default = str

    from . import api, console, db, errors, guard, health, hooks, security
    db.init_app(app)
    guard.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(hooks.bp)
    return app
