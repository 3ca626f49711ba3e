"""The executor contract: run one prompt in a task's session and report reply, session and usage.

Every adapter turns its tool's failures into ``ExecutorError(kind, message)`` at this boundary, with
``kind`` one of: not_found, auth, timeout, rate_limited, transient, exit_error, bad_output, cancelled.
``ExecutorError.retryable`` says whether a retry may help (the stage's policy decides whether it does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ExecutorError

__all__ = ["ExecRequest", "ExecResult", "Executor", "ExecutorError"]


@dataclass
class ExecRequest:
    """What a stage asks an executor to do."""

    prompt: str
    session_id: str | None  # the task's executor session to resume, None on the first turn
    workdir: Path  # per-task working directory (exists)
    timeout: float  # wall-clock seconds; past it the whole process group is killed -> kind "timeout"
    cancel: threading.Event = field(default_factory=threading.Event)  # set -> kill -> kind "cancelled"
    on_event: Callable[[str, dict], None] = lambda kind, data: None  # progress events (kind, data)
    on_process: Callable[[int], None] = lambda pid: None  # called with the process (group) id once spawned


@dataclass
class ExecResult:
    """What an executor run produced."""

    text: str
    session_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)  # input_tokens, output_tokens, cost_usd


class Executor:
    """Base class of the adapters; ``run`` must be safe to call from several threads."""

    name = "base"
    #: True when the tool keeps its own conversation, so memory need not be replayed in the prompt.
    keeps_session = False
    #: True when the tool reports its session's running totals in usage (each turn's own use is their growth).
    cumulative_usage = False

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    def run(self, req: ExecRequest) -> ExecResult:
        raise NotImplementedError

    def checkpoint(self, session_id: str | None) -> dict | None:
        """What the tool's own session holds before an attempt (None: nothing alter0 can roll back)."""
        return None

    def rollback(self, mark: dict | None) -> None:
        """Put the tool's session back as ``checkpoint`` found it (a failed attempt's message is forgotten)."""

    def available(self) -> tuple[bool, str]:
        """(usable, detail): whether the binary or server can be found, and where or why not."""
        return True, ""
