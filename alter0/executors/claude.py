"""Anthropic Claude Code: ``claude -p --output-format stream-json --verbose``, prompt on stdin.

The stream's last line is the same result object ``--output-format json`` prints; ``is_error`` is
checked first (an API failure arrives as ``subtype: success`` with ``is_error: true``). Assistant
content blocks become progress events; other line types are ignored. ``CLAUDE_CONFIG_DIR`` is
isolated only when executor.home (or executor.isolate_home) is set -- see ``command.py``.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ExecutorError
from . import model_server
from .base import ExecRequest, ExecResult
from .codex import EVENT_TEXT_CHARS, parse_event
from .cli_base import AgentCliExecutor, classify_failure

#: Result subtypes that are final stops, never worth a retry.
FINAL_SUBTYPES = ("error_max_turns", "error_max_budget_usd", "error_during_execution")


def find_result(text: str) -> dict | None:
    """The last ``type: result`` object of a json or stream-json stdout."""
    found = None
    for line in text.splitlines():
        event = parse_event(line)
        if event and event.get("type") == "result":
            found = event
    if found is None and text.strip().startswith("{"):
        try:  # a pretty-printed single object
            obj = json.loads(text)
            found = obj if isinstance(obj, dict) and obj.get("type") == "result" else None
        except ValueError:
            pass
    return found


def usage_of(result: dict) -> dict[str, Any]:
    """input_tokens, output_tokens, cached_input_tokens (cache reads+writes) and cost_usd of a result."""
    usage = result.get("usage") or {}
    out: dict[str, Any] = {}
    if isinstance(usage.get("input_tokens"), int):
        out["input_tokens"] = usage["input_tokens"]
    if isinstance(usage.get("output_tokens"), int):
        out["output_tokens"] = usage["output_tokens"]
    cached = sum(v for k, v in usage.items() if k.startswith("cache_") and isinstance(v, int))
    if cached:
        out["cached_input_tokens"] = cached
    if isinstance(result.get("total_cost_usd"), (int, float)):
        out["cost_usd"] = float(result["total_cost_usd"])
    return out


def error_of(result: dict) -> ExecutorError:
    """The ExecutorError for an ``is_error`` result."""
    subtype = result.get("subtype", "")
    text = str(result.get("result") or "; ".join(map(str, result.get("errors") or [])) or subtype)
    status = result.get("api_error_status")
    if subtype in FINAL_SUBTYPES:
        return ExecutorError("exit_error", f"claude stopped: {subtype}" + (f" ({text})" if text != subtype else ""))
    if status in (401, 403):
        kind = "auth"
    elif status in (429, 529):
        kind = "rate_limited"
    elif isinstance(status, int) and status >= 500:
        kind = "transient"
    else:
        kind = classify_failure(text)
    return ExecutorError(kind, f"claude failed: {text}")


def progress_events(event: dict) -> list[tuple[str, dict]]:
    """The (kind, data) progress events for one stream-json line."""
    if event.get("type") != "assistant":
        return []
    out = []
    for block in (event.get("message") or {}).get("content") or []:
        btype = block.get("type")
        text = block.get("text") or block.get("thinking") or ""
        if btype == "tool_use":
            text = f"{block.get('name', '?')} {json.dumps(block.get('input', {}))}"
        out.append(("executor.item", {"phase": "completed", "type": btype, "text": str(text)[:EVENT_TEXT_CHARS]}))
    return out


class ClaudeExecutor(AgentCliExecutor):
    """``claude -p``; resumes the task's session with ``--resume=<session_id>``."""

    name = "claude"
    config_env = "CLAUDE_CONFIG_DIR"
    default_config_dir, session_globs = ".claude", ("projects/*/{id}.jsonl",)

    def server_env(self) -> dict[str, str]:
        """With executor.base_url: ANTHROPIC_BASE_URL (and key), no outside traffic, no retries of its own."""
        root = self.server_root()
        if not root:
            return {}
        env = {"ANTHROPIC_BASE_URL": root, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "CLAUDE_CODE_MAX_RETRIES": "0"}  # alter0's retry policy decides
        if model_server.api_key(self.settings):
            env["ANTHROPIC_API_KEY"] = model_server.api_key(self.settings)
        return env

    def argv(self, req: ExecRequest) -> list[str]:
        """The full command line for ``req``."""
        argv = [self.binary, "-p", "--output-format", "stream-json", "--verbose"]
        session = self.resume_id(req)
        if session:
            argv.append(f"--resume={session}")
        if self.setting("executor.model"):
            argv += ["--model", self.setting("executor.model")]
        argv += ["--permission-mode", self.setting("executor.claude.permission_mode")]
        if self.setting("executor.claude.max_turns"):
            argv += ["--max-turns", str(self.setting("executor.claude.max_turns"))]
        return argv + list(self.setting("executor.extra_args") or [])

    def run(self, req: ExecRequest) -> ExecResult:
        """Run one turn and return the result text, the session id and the usage."""

        def on_line(line: str) -> None:
            event = parse_event(line)
            for progress in progress_events(event) if event else []:
                self.emit(req, *progress)

        proc = self.spawn(req, self.argv(req), req.prompt, on_line)
        result = find_result(proc.stdout)
        if result is None:
            tail = proc.stderr_tail.strip()[-1000:]
            kind = classify_failure(tail) if proc.returncode != 0 else "bad_output"
            raise self.failure(kind, f"claude exited with status {proc.returncode} without a result"
                               + (f": {tail}" if tail else ""))
        if result.get("is_error"):
            err = error_of(result)
            raise self.failure(err.kind, err.message)
        text = result.get("result")
        if not isinstance(text, str) or not text.strip():
            raise ExecutorError("bad_output", "claude returned an empty result")
        return ExecResult(text=text, session_id=self.reported_id(req, result.get("session_id")),
                          usage=usage_of(result))
