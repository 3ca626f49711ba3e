"""The base of every executor that spawns a CLI (settings, environment, home dir) and failure classification.

Home directory decision (applies to codex, claude and llm alike):

* By default (``executor.home`` empty and ``executor.isolate_home`` false) alter0 leaves ``HOME``,
  ``CODEX_HOME``, ``CLAUDE_CONFIG_DIR`` and ``LLM_USER_PATH`` alone: the CLI runs with the user's own
  login, keys and config, and keeps its sessions where it always does (``~/.codex/sessions``,
  ``~/.claude/projects``). A real user's login lives there; isolating by default would log them out.
* With ``executor.home`` set (or ``executor.isolate_home`` true, which means
  ``<output_dir>/agent-home``), each CLI gets ``<home>/<executor>`` (created) as ``HOME`` and as its
  config dir: ``CODEX_HOME`` for codex, ``CLAUDE_CONFIG_DIR`` for claude, ``LLM_USER_PATH`` for llm.
  Sessions, logs and config then stay with that alter0 install; put credentials there
  (``CODEX_HOME=<home>/codex codex login``, an ``ANTHROPIC_API_KEY`` in ``executor.env``, ...).
* ``executor.env`` is applied last and wins over both.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

from ..config import SETTINGS_BY_KEY
from ..errors import ExecutorError
from . import model_server, session_ids
from .base import ExecRequest, Executor
from .process import ProcessResult, run_process

logger = logging.getLogger(__name__)

def install_bin() -> str:
    """The directory of the running interpreter: the venv's bin for an installed alter0 (not resolved)."""
    return os.path.dirname(os.path.abspath(sys.executable))


#: (binary, search path) -> the path ``shutil.which`` found (CliExecutor.which).
_FOUND: dict[tuple[str, str], str | None] = {}


class CliExecutor(Executor):
    """Base of the executors that spawn a binary: settings lookup, environment, home dir, spawning."""

    binary = ""
    #: Environment variable holding the tool's config dir when the home is isolated.
    config_env: str | None = None
    #: The config dir under HOME when ``config_env`` is not set (".codex").
    default_config_dir = ""
    #: Globs, under the config dir, of a session's append-only JSONL files ({id}: the session id).
    session_globs: tuple[str, ...] = ()

    def setting(self, key: str) -> Any:
        """A setting's value, or its default when the settings given do not hold it."""
        return self.settings.get(key, SETTINGS_BY_KEY[key].default)

    def argv0(self) -> str:
        """The binary to run: the command's first word or the adapter's default name."""
        return self.binary

    def home_dir(self) -> Path | None:
        """The isolated home of this executor, or None when the user's own HOME is used."""
        root = self.setting("executor.home")
        if not root and not self.setting("executor.isolate_home"):
            return None
        if not root:
            out = self.settings.get("runtime.output_dir") or SETTINGS_BY_KEY["runtime.output_dir"].default
            root = Path(out) / "agent-home"
        return Path(root).expanduser().resolve() / self.name

    def build_env(self) -> dict[str, str]:
        """os.environ, then the isolated home (if any), then the model server's variables, then executor.env."""
        env = dict(os.environ)
        home = self.home_dir()
        if home is not None:
            home.mkdir(parents=True, exist_ok=True)
            env["HOME"] = str(home)
            if self.config_env:
                env[self.config_env] = str(home)
        env.update(self.server_env())
        env.update(self.setting("executor.env") or {})
        env["PATH"] = self.search_path()  # an agent started from the install finds its siblings too
        return env

    def server_root(self) -> str:
        """executor.base_url as a server root (no trailing /v1), or "" for the tool's own default."""
        return model_server.server_root(self.settings, self.name)

    def server_env(self) -> dict[str, str]:
        """Environment that points the tool at executor.base_url (none by default)."""
        return {}

    def search_path(self) -> str:
        """The executor's PATH, then the install's own bin directory (where ``sys.executable`` is).

        The CLI, the web front end and the worker may be started with different PATHs (the README's
        ``.venv/bin/alter0`` is run without activating the venv); looking in the install's own
        environment last makes ``executor.name = auto`` resolve the same in all of them.
        """
        env_path = (self.setting("executor.env") or {}).get("PATH", os.environ.get("PATH", os.defpath))
        own_bin = install_bin()
        parts = env_path.split(os.pathsep) if env_path else []
        return os.pathsep.join(parts + ([own_bin] if own_bin not in parts else []))

    def checkpoint(self, session_id: str | None) -> dict | None:
        """The sizes of the session's files now: they are append-only, so cutting them back to these sizes
        forgets whatever a failed attempt wrote (the user's message the CLI saved before calling the model)."""
        if not session_id or not self.session_globs:
            return None
        env = self.build_env()
        root = Path(env.get(self.config_env or "", "") or Path(env.get("HOME", "~")).expanduser() /
                    self.default_config_dir)
        files = [p for g in self.session_globs for p in root.glob(g.format(id=session_id))]
        return {str(p): p.stat().st_size for p in files}

    def rollback(self, mark: dict | None) -> None:
        for path, size in (mark or {}).items():
            try:
                if os.path.getsize(path) > size:
                    os.truncate(path, size)
                    logger.info("%s session file %s cut back to %d bytes after a failed attempt", self.name,
                                path, size)
            except OSError as exc:
                logger.warning("%s session file %s could not be rolled back: %s", self.name, path, exc)

    def which(self) -> str | None:
        """Full path of the binary on the executor's PATH or in the install's bin directory, or None.

        Remembered per (binary, search path): a spawn checks only that the path found is still an executable
        file, and looks the binary up again if it is not (removed, or moved by an upgrade)."""
        key = (self.argv0(), self.search_path())
        found = _FOUND.get(key)
        if found is None or not (os.access(found, os.X_OK) and os.path.isfile(found)):
            found = _FOUND[key] = shutil.which(key[0], path=key[1])
        return found

    def available(self) -> tuple[bool, str]:
        """Whether the binary is on PATH (or in the install's bin directory), and where."""
        found = self.which()
        return (True, found) if found else (False, f"'{self.argv0()}' not found on PATH nor in {install_bin()}")

    def spawn(self, req: ExecRequest, argv: list[str], stdin_text: str | None, on_line=None) -> ProcessResult:
        """Run argv for ``req`` with this executor's environment, in the request's workdir."""
        found = self.which()
        if found is None:
            raise ExecutorError("not_found", f"executor binary '{self.argv0()}' not found on PATH; "
                                "install it or set executor.name")
        logger.debug("spawning %s", argv)
        return run_process([found, *argv[1:]], stdin_text=stdin_text, env=self.build_env(), cwd=req.workdir,
                           timeout=req.timeout, cancel=req.cancel, on_stdout_line=on_line,
                           on_spawn=req.on_process)

    def failure(self, kind: str, message: str) -> ExecutorError:
        """An ExecutorError whose message tells the user what to check for ``auth`` failures."""
        if kind == "auth":
            home = self.home_dir()
            where = f"its config dir {home}" if home else "your own login (HOME)"
            message += (f" -- {self.name} could not authenticate: check the API key or login it uses "
                        f"({where}; keys can be given in executor.env)")
        return ExecutorError(kind, message)

    def resume_id(self, req: ExecRequest) -> str | None:
        """The stored session to resume if it has this agent's shape; else None (a fresh session, an event)."""
        return session_ids.checked(self.name, req.session_id, lambda k, d: self.emit(req, k, d), "stored")

    def reported_id(self, req: ExecRequest, reported: Any) -> str | None:
        """The session id to store after a turn: the agent's if it has the right shape, else the resumed one."""
        found = session_ids.checked(self.name, reported, lambda k, d: self.emit(req, k, d), "reported")
        return found or (req.session_id if session_ids.valid(self.name, req.session_id) else None)

    def emit(self, req: ExecRequest, kind: str, data: Mapping[str, Any]) -> None:
        """Send a progress event; a failing callback is logged, never raised."""
        try:
            req.on_event(kind, dict(data))
        except Exception:
            logger.exception("executor event callback failed (%s)", kind)


class AgentCliExecutor(CliExecutor):
    """An agent CLI (codex, claude, llm): its binary is named like the adapter and it keeps its own session."""

    keeps_session = True

    @property
    def binary(self) -> str:
        return self.name


_AUTH_MARKERS = (r"\b40[13]\b", "unauthorized", "forbidden", "invalid api key", "invalid x-api-key",
                 "authentication", "not logged in", "please run /login", "missing environment variable",
                 "api key", "no key found")
_RATE_MARKERS = (r"\b429\b", r"\b529\b", "rate limit", "rate_limit", "too many requests", "overloaded")
_TRANSIENT_MARKERS = (r"\b50[0234]\b", "internal server error", "bad gateway", "service unavailable",
                      "stream disconnected", "connection", "reconnecting", "timed out", "timeout",
                      "unable to connect", "network")


def classify_failure(text: str) -> str:
    """Map an agent's error text to an error kind: auth, rate_limited, transient or exit_error."""
    low = re.sub(r"https?://\S+", "", text.lower())  # ports and paths in URLs are not status codes
    for kind, markers in (("auth", _AUTH_MARKERS), ("rate_limited", _RATE_MARKERS),
                          ("transient", _TRANSIENT_MARKERS)):
        if any(re.search(m, low) for m in markers):
            return kind
    return "exit_error"
