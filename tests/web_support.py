"""Web test fixtures: an in-process app and its Flask test client, and a real gunicorn ``live_server`` beside
a real worker. A test module loads them with ``pytest_plugins = ("web_support",)`` (never import this module:
pytest must import it first to rewrite its asserts); the helpers they use are in web_helpers.py.
"""

from __future__ import annotations

import os
import signal

import pytest

from web_helpers import make_app, start_gunicorn


@pytest.fixture
def app(a0):
    from alter0.runtime import set_runtime
    app = make_app(a0)
    yield app
    app.queue.pool.shutdown(wait=True, cancel_futures=True)
    set_runtime(None)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(make_env):
    """A real worker plus real gunicorn on one temp install; yields the LiveServer (``.env`` is the install)."""
    env = make_env(web={"sync_timeout_sec": 30})
    env.start_worker()
    server = start_gunicorn(env)
    yield server
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=30)
