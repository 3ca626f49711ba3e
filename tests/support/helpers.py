"""The one module of test helpers: paths, prerequisites (skip locally, fail in CI), ports, processes, configs
and polling. Fixtures live in tests/conftest.py; they and every test module import from here."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FAKE_AGENT = FIXTURES / "fake_agent.py"
REGRESSION = ROOT / "tests" / "regression"
BIN = Path(sys.executable).parent
#: Job statuses a job does not leave by itself.
FINISHED = ("done", "failed", "cancelled", "timed_out")


# --- prerequisites ---------------------------------------------------------------------------------

def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip locally; in CI (CI=true) a missing prerequisite is a failure, never a silent skip."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


# --- ports and processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie is dead for our purposes)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in "ZX"


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) pids of process group ``pgid``, from /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _proc_stat(entry.name)
        if fields is not None and fields[0] not in "ZX" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


# --- polling ---------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str | Callable[[], str] = "condition",
               interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; return that (AssertionError at the timeout naming
    ``what``, or ``what()``: e.g. a server's log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")


def wait_status(fetch: Callable[[], dict], statuses=FINISHED, timeout: float = 30, interval: float = 0.1) -> dict:
    """Call ``fetch()`` (a job view) until its status is one of ``statuses`` or ``timeout`` passes; the last view
    (the caller asserts on its status)."""
    deadline = time.time() + timeout
    while True:
        view = fetch()
        if view["status"] in statuses or time.time() > deadline:
            return view
        time.sleep(interval)


# --- configs ---------------------------------------------------------------------------------------

def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` laid over it; nested dicts merge key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_config(root: Path, **sections) -> Path:
    """``root/config.json``: output dir ``root/output``, then ``sections`` (nested dicts) merged over it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.json"
    path.write_text(json.dumps(merge({"runtime": {"output_dir": str(root / "output")}}, sections), indent=2))
    return path


def make_cfg(root: Path, **sections):
    """The Config of ``write_config(root, **sections)``, read with no environment (never ./config/config.json)."""
    from alter0.config import load_config
    return load_config(write_config(root, **sections), env={})


def open_cfg(root: Path, **sections):
    """``make_cfg`` with its output dirs made and its database opened (and migrated) in this process."""
    from alter0.migrations import open_current
    from alter0.paths import ensure_dirs
    cfg = make_cfg(root, **sections)
    ensure_dirs(cfg.output_dir)
    open_current(cfg)
    return cfg


def regression_cfg(**overrides):
    """The routing regression defaults (tests/regression/defaults.json) with ``key__sub`` overrides."""
    from alter0.config import load_config
    return load_config(REGRESSION / "defaults.json", env={},
                       overrides={k.replace("__", "."): v for k, v in overrides.items()})


def default_settings(**overrides) -> dict:
    """Every setting at its default, then ``overrides`` (``key__sub`` or dotted keys): flat, for build_executor."""
    from alter0.config import SETTINGS
    values = {s.key: s.default for s in SETTINGS}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return values


def exec_request(tmp_path: Path, prompt: str = "list the repo root", session_id=None, timeout: float = 20.0,
                 **kw):
    """An ExecRequest working in ``tmp_path/work``."""
    from alter0.executors import ExecRequest
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return ExecRequest(prompt=prompt, session_id=session_id, workdir=workdir, timeout=timeout, **kw)
