"""Simon Willison's ``llm`` CLI: ``llm -m MODEL [--cid ID]``, prompt on stdin, the reply streamed on stdout.

The reply's text reaches the job as ``executor.delta`` progress events while it is written (at most one
every DELTA_EVERY_SEC). A run that loops (one sentence a third time, ``alter0.repetition``) or passes
``executor.llm.max_chars`` is stopped there and its reply is the text so far with the repeats dropped.
After a run, ``llm logs -n 5 --json`` tells the conversation id (kept as the session id) and the
token counts; the newest entry whose prompt and reply match this run is taken, so that two runs in
parallel do not swap ids. ``LLM_USER_PATH`` is isolated only when executor.home is set (see command.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from ..errors import ExecutorError
from .. import repetition
from . import model_server, session_ids
from .base import ExecRequest, ExecResult
from .cli_base import AgentCliExecutor, CliExecutor, classify_failure
from .process import ProcessResult, run_process

#: Log entries searched for this run's conversation id.
LOG_WINDOW = 5
#: Seconds between two ``executor.delta`` events of one run (the job's event budget is 500).
DELTA_EVERY_SEC = 0.3
#: Characters per token when the model's plugin reports no usage (SmolLM2's does not): an estimate.
CHARS_PER_TOKEN = 4


def pick_log_entry(entries: list[dict], prompt: str, reply: str) -> dict | None:
    """The newest log entry of this run (same prompt and reply), else the newest entry."""
    for entry in entries:
        if (entry.get("prompt") or "").strip() == prompt.strip() and (entry.get("response") or "").strip() == reply:
            return entry
    return entries[0] if entries else None


def estimated_usage(prompt: str, reply: str) -> dict:
    """Token counts estimated from the text (CHARS_PER_TOKEN), marked so."""
    return {"input_tokens": -(-len(prompt) // CHARS_PER_TOKEN), "output_tokens": -(-len(reply) // CHARS_PER_TOKEN),
            "estimated": True}


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
        argv = [self.binary, "-m", self.model()]
        if self.setting("executor.llm.system"):
            argv += ["-s", self.setting("executor.llm.system")]
        session = self.resume_id(req)
        if session:
            argv += ["--cid", session]
        return argv + list(self.setting("executor.extra_args") or [])

    def run(self, req: ExecRequest) -> ExecResult:
        """Stream one prompt's reply (stopping a loop early), then read the conversation id and usage from ``llm logs``."""
        stream = ReplyStream(self, req, self.setting("executor.llm.max_chars"))
        proc = self.spawn_streaming(req, stream)
        text = stream.reply(proc, "llm")
        entry = {} if proc.stopped else self._log_entry(req, proc.stdout.strip())  # a stopped run is not logged
        usage = {k: entry[k] for k in ("input_tokens", "output_tokens") if isinstance(entry.get(k), int)}
        if not usage:  # the plugin counted nothing: estimate, and say so
            usage = estimated_usage(req.prompt, proc.stdout)
        return ExecResult(text=text, session_id=self.reported_id(req, entry.get("conversation_id")), usage=usage)

    def spawn_streaming(self, req: ExecRequest, stream: "ReplyStream"):
        """Run the prompt with its output read as it arrives; ``stream.stop`` ends it early."""
        found = self.which()
        if found is None:
            raise ExecutorError("not_found", f"executor binary '{self.argv0()}' not found on PATH; "
                                "install it or set executor.name")
        argv = self.argv(req)
        return run_process([found, *argv[1:]], stdin_text=req.prompt, env=self.build_env(), cwd=req.workdir,
                           timeout=req.timeout, cancel=req.cancel, on_spawn=req.on_process,
                           on_stdout_chunk=stream.feed, stop=stream.stop)

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


class ReplyStream:
    """One run's streamed output (llm, local): delta events (throttled), and the stop when it loops or passes
    ``max_chars`` (0: no limit)."""

    def __init__(self, executor: CliExecutor, req: ExecRequest, max_chars: int = 0):
        self.executor, self.req = executor, req
        self.text, self.pending = "", ""
        self.last_emit = 0.0
        self.stop = threading.Event()
        self.stop_reason = ""
        self.max_chars = max_chars

    def feed(self, chunk: str) -> None:
        self.text += chunk
        self.pending += chunk
        if time.monotonic() - self.last_emit >= DELTA_EVERY_SEC:
            self.flush()
        if not self.stop.is_set():
            if repetition.degenerate(self.text):
                self.stop_reason = "repetition"
                self.stop.set()
            elif self.max_chars and len(self.text) >= self.max_chars:
                self.stop_reason = "max_chars"
                self.stop.set()

    def reply(self, proc: ProcessResult, who: str) -> str:
        """The finished run's reply (the text so far, repeats dropped, when it was stopped); ExecutorError when
        the process failed or printed nothing."""
        if proc.returncode != 0 and not proc.stopped:
            tail = proc.stderr_tail.strip()[-1000:]
            raise self.executor.failure(classify_failure(tail), f"{who} exited with status {proc.returncode}"
                                        + (f": {tail}" if tail else ""))
        self.flush()
        text = repetition.collapse(repetition.trim_partial(proc.stdout) if proc.stopped else proc.stdout).strip()
        if not text:
            raise ExecutorError("bad_output", f"{who} printed nothing on stdout")
        if proc.stopped:
            self.executor.emit(self.req, "executor.stopped", {"reason": self.stop_reason, "chars": len(proc.stdout)})
        return text

    def flush(self) -> None:
        if self.pending:
            self.executor.emit(self.req, "executor.delta", {"text": self.pending})
            self.pending = ""
            self.last_emit = time.monotonic()
