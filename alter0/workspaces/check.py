"""workspace.check_command run in a task's worktree after a turn, under the executor's timeout and cancel rules."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import ExecutorError
from ..executors.process import run_process

#: Characters of the check's output kept in the receipt.
OUTPUT_TAIL_CHARS = 2000


def run_check(argv: list[str], workdir: Path, timeout: float, cancel: threading.Event) -> dict:
    """Run the check; its exit code, duration and output tail. A cancel propagates (the job is cancelled); a
    timeout or a missing program is a failed check."""
    try:
        done = run_process(argv, cwd=workdir, timeout=timeout, cancel=cancel)
    except ExecutorError as exc:
        if exc.kind == "cancelled":
            raise
        return {"argv": argv, "exit_code": None, "passed": False, "timed_out": exc.kind == "timeout",
                "duration_sec": None, "output_tail": exc.message}
    tail = (done.stdout + done.stderr_tail)[-OUTPUT_TAIL_CHARS:]
    return {"argv": argv, "exit_code": done.returncode, "passed": done.returncode == 0, "timed_out": False,
            "duration_sec": round(done.duration, 3), "output_tail": tail}
