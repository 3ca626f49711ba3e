"""The default registry: executor names, ``auto`` resolution and one built executor per configuration."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from ..errors import ExecutorError
from .base import Executor
from .claude import ClaudeExecutor
from .cli_base import install_bin
from .codex import CodexExecutor
from .command import CommandExecutor
from .llm import LlmExecutor
from .local import LocalExecutor
from .openai import OpenAIExecutor

EXECUTORS: dict[str, type[Executor]] = {
    "codex": CodexExecutor, "claude": ClaudeExecutor, "llm": LlmExecutor, "local": LocalExecutor,
    "command": CommandExecutor, "openai": OpenAIExecutor,
}
EXECUTOR_NAMES: tuple[str, ...] = tuple(EXECUTORS)
#: What ``executor.name = auto`` looks for, in order: the agent CLIs on PATH (or in the install's bin), then the
#: bundled local model (the ``local-model`` extra), then ``llm``.
AUTO_ORDER: tuple[str, ...] = ("codex", "claude", "local", "llm")

_cache: dict[tuple[str, str], Executor] = {}
_lock = threading.Lock()


def _settings(cfg: Any) -> dict[str, Any]:
    return cfg.as_dict() if hasattr(cfg, "as_dict") else dict(cfg)


#: Written by scripts/run beside the venv's bin while the local model installs in the background (holds the log path).
INSTALLING_MARKER = "alter0-local-model.installing"


def local_model_installing() -> str | None:
    """The install log's path while scripts/run installs the local model in the background, else None."""
    marker = Path(install_bin()).parent / INSTALLING_MARKER
    try:
        return marker.read_text().strip() or str(marker)
    except OSError:
        return None


def resolve_name(cfg: Any) -> str:
    """executor.name, with ``auto`` replaced by the first of AUTO_ORDER that is installed (on PATH or in the install's bin).

    The same answer in the CLI, the web front end and the worker whatever PATH each was started with
    (``CliExecutor.search_path``)."""
    name = _settings(cfg).get("executor.name", "auto")
    if name != "auto":
        return name
    for candidate in AUTO_ORDER:
        if EXECUTORS[candidate](_settings(cfg)).available()[0]:
            return candidate
    installing = local_model_installing()
    if installing:
        raise ExecutorError("not_found", f"the local model (SmolLM2) is still installing (log: {installing}); "
                            "executor.name = auto answers with it as soon as it is ready -- try again in a few "
                            "minutes, or set executor.name (codex, claude, openai with executor.base_url)")
    raise ExecutorError("not_found", f"executor.name is auto but none of {', '.join(AUTO_ORDER)} is installed "
                        f"(on PATH nor in alter0's own {install_bin()}; the local model: scripts/setup --local-model); "
                        "install one of them or set executor.name (command, openai)")


def build_executor(name: str, cfg: Any) -> Executor:
    """The executor called ``name`` (or ``auto``) for these settings; built once per process."""
    name = resolve_name(cfg) if name == "auto" else name
    if name not in EXECUTORS:
        raise ExecutorError("not_found", f"unknown executor {name!r}; choose one of {', '.join(EXECUTOR_NAMES)}")
    settings = _settings(cfg)
    key = (name, json.dumps({k: v for k, v in settings.items() if k.startswith(("executor.", "runtime.output"))},
                            sort_keys=True, default=str))
    with _lock:
        if key not in _cache:
            _cache[key] = EXECUTORS[name](settings)
        return _cache[key]


def available_executors(cfg: Any) -> dict[str, tuple[bool, str]]:
    """(usable, detail) of every executor for these settings."""
    settings = _settings(cfg)
    return {name: cls(settings).available() for name, cls in EXECUTORS.items()}
