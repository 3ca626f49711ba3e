"""Simon Willison's ``llm`` CLI: ``llm -m MODEL --no-stream [--cid ID]``, prompt on stdin, reply on stdout.

After a run, ``llm logs -n 5 --json`` tells the conversation id (kept as the session id) and the
token counts; the newest entry whose prompt and reply match this run is taken, so that two runs in
parallel do not swap ids. ``LLM_USER_PATH`` is isolated only when executor.home is set (see command.py).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ExecutorError
from . import model_server, session_ids
from .base import ExecRequest, ExecResult
from .cli_base import AgentCliExecutor, classify_failure

#: Log entries searched for this run's conversation id.
LOG_WINDOW = 5


def pick_log_entry(entries: list[dict], prompt: str, reply: str) -> dict | None:
    """The newest log entry of this run (same prompt and reply), else the newest entry."""
    for entry in entries:
        if (entry.get("prompt") or "").strip() == prompt.strip() and (entry.get("response") or "").strip() == reply:
            return entry
    return entries[0] if entries else None


class LlmExecutor(AgentCliExecutor):
    """``llm``: one prompt per run, continuing the task's conversation with ``--cid``."""

    name = "llm"
    config_env = "LLM_USER_PATH"

    def model(self) -> str:
        """executor.model when set, else executor.llm.model."""
        return self.setting("executor.model") or self.setting("executor.llm.model")

    def server_env(self) -> dict[str, str]:
        """With executor.base_url: the OpenAI client's OPENAI_BASE_URL (and key) for llm's OpenAI-compatible models."""
        root = self.server_root()
        if not root:
            return {}
        env = {"OPENAI_BASE_URL": f"{root}/v1"}
        if model_server.api_key(self.settings):
            env["OPENAI_API_KEY"] = model_server.api_key(self.settings)
        return env

    def argv(self, req: ExecRequest) -> list[str]:
        """The command line of one prompt (the prompt itself goes on stdin)."""
        argv = [self.binary, "-m", self.model(), "--no-stream"]
        session = self.resume_id(req)
        if session:
            argv += ["--cid", session]
        return argv + list(self.setting("executor.extra_args") or [])

    def run(self, req: ExecRequest) -> ExecResult:
        """Run one prompt, then read the conversation id and usage from ``llm logs``."""
        proc = self.spawn(req, self.argv(req), req.prompt)
        if proc.returncode != 0:
            tail = proc.stderr_tail.strip()[-1000:]
            raise self.failure(classify_failure(tail), f"llm exited with status {proc.returncode}"
                               + (f": {tail}" if tail else ""))
        text = proc.stdout.strip()
        if not text:
            raise ExecutorError("bad_output", "llm printed nothing on stdout")
        entry = self._log_entry(req, text)
        usage = {k: entry[k] for k in ("input_tokens", "output_tokens") if isinstance(entry.get(k), int)}
        return ExecResult(text=text, session_id=self.reported_id(req, entry.get("conversation_id")), usage=usage)

    def _log_entry(self, req: ExecRequest, reply: str) -> dict[str, Any]:
        argv = [self.binary, "logs", "-n", str(LOG_WINDOW), "--json"]
        if session_ids.valid(self.name, req.session_id):
            argv += ["--cid", req.session_id]
        try:
            proc = self.spawn(req, argv, None)
            entries = json.loads(proc.stdout or "[]")
        except ExecutorError as exc:
            if exc.kind in ("cancelled", "timeout"):
                raise
            return {}
        except ValueError:
            return {}  # logging off or unreadable: the reply still counts, without session
        return pick_log_entry(entries if isinstance(entries, list) else [], req.prompt, reply) or {}
