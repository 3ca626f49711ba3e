"""Shared fixtures: temp installs with real worker processes and the real CLI (``make_env``, ``a0``,
``engine_env``), an in-process runtime on a stub engine (``stub_runtime``, ``rt``), the Flask app and client on
it (``make_web_app``, ``app``, ``client``) and a real gunicorn (``live_server``). Helpers: tests/support/.

No test reads ``config/config.json`` from the current directory or the developer's ALTER0_* settings: the
session runs in a temp directory whose ``config/config.json`` is refused by load_config, with those variables
unset; every fixture passes its config path (and ``env={}``) explicitly.
"""

from __future__ import annotations

import os
import signal

import pytest

from alter0.config import DEFAULT_CONFIG_PATH, SETTINGS

from support.helpers import merge
from support.install import Alter0Env
from support.stub_engine import StubQueue, make_runtime
from scale_support import scale_services  # noqa: E402,F401  (session fixture: Redis + PostgreSQL for dramatiq)
from support.synapse import synapse  # noqa: E402,F401  (session fixture: a real Synapse homeserver)

#: What a test that reads ./config/config.json (instead of its own config) finds there: a key load_config refuses.
POISON = '{"read_by_a_test": "tests must pass their own config path (Flask create_app(test_config) habit)"}\n'


@pytest.fixture(scope="session", autouse=True)
def no_ambient_config(tmp_path_factory):
    """Run the session in a temp dir whose config/config.json fails loudly, with no ALTER0_CONFIG or setting
    variables from the developer's shell (subprocesses get ALTER0_CONFIG from their Alter0Env)."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / DEFAULT_CONFIG_PATH).parent.mkdir(parents=True)
    (cwd / DEFAULT_CONFIG_PATH).write_text(POISON)
    names = {"ALTER0_CONFIG", *(s.env_name for s in SETTINGS if s.env_name)}
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    before = os.getcwd()
    os.chdir(cwd)
    yield cwd
    os.chdir(before)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def close_db():
    """Close this thread's connection of the bound database after each test."""
    yield
    from alter0.models import db
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()


# --- installs with real processes ------------------------------------------------------------------

@pytest.fixture
def make_env(tmp_path):
    """Factory: make_env(**config_overrides) -> Alter0Env; its processes are stopped after the test."""
    envs: list[Alter0Env] = []

    def factory(**config) -> Alter0Env:
        env = Alter0Env(tmp_path / f"install{len(envs)}", **config)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.stop_all()


@pytest.fixture
def a0(make_env) -> Alter0Env:
    """A default install (fake command executor) with no processes started."""
    return make_env()


ENGINES = ["huey", "dramatiq"]


@pytest.fixture(params=ENGINES)
def engine_env(request, make_env):
    """Factory like make_env, once per queue engine: Huey+SQLite, then Dramatiq+Redis+PostgreSQL."""
    if request.param == "huey":
        return make_env
    from scale_support import fresh_backend_config
    request.getfixturevalue("scale_services")

    def factory(**config):
        return make_env(**merge(fresh_backend_config(), config))

    return factory


# --- in process, on the stub engine ----------------------------------------------------------------

@pytest.fixture
def stub_runtime(make_env):
    """Factory: stub_runtime(threads=0, env=None, environ=None, **settings) -> a Runtime on a temp install's
    SQLite file (``env``, or a new default one) whose queue is a StubQueue: inline (``rt.queue.join()`` runs the
    stages) or on ``threads`` threads. It is the process runtime until the test ends; then its queue is closed."""
    from alter0.runtime import set_runtime
    made = []

    def factory(threads: int = 0, env: Alter0Env | None = None, environ: dict | None = None, **settings):
        rt = make_runtime((env or make_env()).config_path, StubQueue(threads), environ, **settings)
        set_runtime(rt)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.queue.close()
    set_runtime(None)


@pytest.fixture
def rt(stub_runtime):
    """An inline stub-engine runtime on a default temp install."""
    return stub_runtime()


@pytest.fixture
def make_web_app(stub_runtime):
    """Factory: make_web_app(environ=None, **settings) -> create_app on a stub runtime with 4 stage threads
    (``app.queue.pause()`` stops it taking messages); 10 s sync and stream timeouts unless overridden."""
    from support.web import make_app

    def factory(environ: dict | None = None, **settings):
        settings = {"web__sync_timeout_sec": 10, "web__stream_timeout_sec": 10, **settings}
        return make_app(stub_runtime(threads=4, environ=environ, **settings))

    return factory


@pytest.fixture
def app(make_web_app):
    return make_web_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(make_env):
    """A real worker plus real gunicorn on one temp install; yields the LiveServer (``.env`` is the install)."""
    from support.web import start_gunicorn
    env = make_env(web={"sync_timeout_sec": 30})
    env.start_worker()
    server = start_gunicorn(env)
    yield server
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=30)
