"""OpenAI Codex CLI: ``codex exec --json``, prompt on stdin, JSONL events on stdout.

Success is decided from the events (``turn.completed`` / ``turn.failed``), not from the exit code.
Unknown event and item types are ignored. ``CODEX_HOME`` is isolated only when executor.home (or
executor.isolate_home) is set -- see ``command.py``; by default codex uses the user's own login.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExecutorError
from . import model_server
from .base import ExecRequest, ExecResult
from .cli_base import AgentCliExecutor, classify_failure

#: The model provider executor.base_url becomes, and the variable holding its key.
PROVIDER_ID = "alter0"
PROVIDER_KEY_ENV = "ALTER0_EXECUTOR_API_KEY"
#: Characters of an item's text or command kept in a progress event.
EVENT_TEXT_CHARS = 200


@dataclass
class CodexTurn:
    """What the JSONL events of one ``codex exec`` run said."""

    thread_id: str | None = None
    messages: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    completed: bool = False
    failure: str | None = None
    warnings: list[str] = field(default_factory=list)


def parse_event(line: str) -> dict | None:
    """One JSONL line as a dict, or None for blank or non-JSON lines."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def apply_event(turn: CodexTurn, event: dict) -> None:
    """Fold one event into ``turn``; unknown types are ignored."""
    etype = event.get("type")
    if etype == "thread.started":
        turn.thread_id = event.get("thread_id") or turn.thread_id
    elif etype == "item.completed":
        item = event.get("item") or {}
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            turn.messages.append(item["text"])
    elif etype == "turn.completed":
        turn.completed = True
        for key, value in (event.get("usage") or {}).items():
            if isinstance(value, int):
                turn.usage[key] = turn.usage.get(key, 0) + value
    elif etype == "turn.failed":
        turn.failure = str((event.get("error") or {}).get("message") or "turn failed")
    elif etype == "error":
        turn.warnings.append(str(event.get("message", "")))


def parse_transcript(text: str) -> CodexTurn:
    """Parse a whole ``codex exec --json`` stdout."""
    turn = CodexTurn()
    for line in text.splitlines():
        event = parse_event(line)
        if event:
            apply_event(turn, event)
    return turn


def progress_event(event: dict) -> tuple[str, dict] | None:
    """The (kind, data) progress event to emit for a codex event, or None."""
    etype = str(event.get("type", ""))
    if etype.startswith("item."):
        item = event.get("item") or {}
        return "executor.item", {"phase": etype[5:], "type": item.get("type"), "id": item.get("id"),
                                 "text": _summary(item)[:EVENT_TEXT_CHARS]}
    if etype == "error":
        return "executor.warning", {"message": str(event.get("message", ""))[:EVENT_TEXT_CHARS]}
    return None


def _summary(item: dict) -> str:
    if item.get("type") == "command_execution":
        return str(item.get("command", ""))
    if item.get("type") == "file_change":
        return ", ".join(f"{c.get('kind', '?')} {c.get('path', '?')}" for c in item.get("changes") or [])
    for key in ("text", "message", "query"):
        if isinstance(item.get(key), str):
            return item[key]
    return ""


def usage_of(turn: CodexTurn) -> dict[str, Any]:
    """The usage dict alter0 stores: input_tokens, output_tokens, cached_input_tokens when given."""
    keys = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_output_tokens")
    return {k: turn.usage[k] for k in keys if k in turn.usage}


class CodexExecutor(AgentCliExecutor):
    """``codex exec --json``; resumes the task's thread with ``codex exec ... resume <thread_id> -``."""

    name = "codex"
    config_env = "CODEX_HOME"
    cumulative_usage = True  # turn.completed on a resumed thread reports the thread's running total
    default_config_dir, session_globs = ".codex", ("sessions/**/rollout-*-{id}.jsonl",)

    def provider_args(self) -> list[str]:
        """With executor.base_url: ``-c`` overrides making it codex's model provider (Responses wire API).

        Also off: analytics (each run would wait ~5 s at exit), the plugin sync (github.com) and the update
        check -- a self-hosted model server means no outside traffic; retries are alter0's to decide."""
        root = self.server_root()
        if not root:
            return []
        provider = {"name": "alter0 executor.base_url", "base_url": f"{root}/v1", "wire_api": "responses",
                    "supports_websockets": False, "request_max_retries": 0, "stream_max_retries": 0}
        if model_server.api_key(self.settings):
            provider["env_key"] = PROVIDER_KEY_ENV
        overrides = {"model_provider": PROVIDER_ID, "analytics.enabled": False, "features.plugins": False,
                     "check_for_update_on_startup": False,
                     **{f"model_providers.{PROVIDER_ID}.{k}": v for k, v in provider.items()}}
        return [arg for key, value in overrides.items() for arg in ("-c", f"{key}={json.dumps(value)}")]

    def server_env(self) -> dict[str, str]:
        """The provider's key, in the variable the provider names (never on the command line)."""
        key = model_server.api_key(self.settings)
        return {PROVIDER_KEY_ENV: key} if self.server_root() and key else {}

    def argv(self, req: ExecRequest) -> list[str]:
        """The full command line for ``req`` (options first, then ``resume <id>``, then ``-``)."""
        argv = [self.binary, "exec", "--json", "--color", "never", "--skip-git-repo-check",
                "--sandbox", self.setting("executor.codex.sandbox"), "-C", str(req.workdir)]
        if self.setting("executor.model"):
            argv += ["-m", self.setting("executor.model")]
        argv += self.provider_args()
        argv += list(self.setting("executor.extra_args") or [])
        session = self.resume_id(req)
        if session:
            argv += ["resume", session]
        return argv + ["-"]

    def run(self, req: ExecRequest) -> ExecResult:
        """Run one turn and return the last agent message, the thread id and the usage."""
        turn = CodexTurn()

        def on_line(line: str) -> None:
            event = parse_event(line)
            if event is None:
                return
            apply_event(turn, event)
            progress = progress_event(event)
            if progress:
                self.emit(req, *progress)

        result = self.spawn(req, self.argv(req), req.prompt, on_line)
        if turn.failure is not None:
            raise self.failure(classify_failure(turn.failure), f"codex turn failed: {turn.failure}")
        if not turn.completed:
            detail = turn.warnings[-1] if turn.warnings else result.stderr_tail.strip()[-1000:]
            kind = classify_failure(detail) if result.returncode != 0 or turn.warnings else "bad_output"
            raise self.failure(kind, f"codex exited with status {result.returncode} without finishing "
                               f"the turn" + (f": {detail}" if detail else ""))
        if not turn.messages:
            raise ExecutorError("bad_output", "codex finished the turn without an agent message")
        return ExecResult(text=turn.messages[-1], session_id=self.reported_id(req, turn.thread_id),
                          usage=usage_of(turn))
