"""The plain command executor: any program, prompt on stdin, reply on stdout."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExecutorError
from .base import ExecRequest, ExecResult
from .cli_base import CliExecutor
from .process import ProcessResult

#: Exit status a command uses to say "temporary failure, try again" (sysexits.h EX_TEMPFAIL).
EX_TEMPFAIL = 75


class CommandExecutor(CliExecutor):
    """Any program: argv from executor.command, prompt on stdin, reply = stdout.

    Exit 0 with output: success. Exit 75 (EX_TEMPFAIL): ``transient`` (retryable) -- a command
    signals "try again later" that way. Any other non-zero exit: ``exit_error`` with the stderr tail.
    Exit 0 with empty stdout: ``bad_output``.
    """

    name = "command"
    keeps_session = False

    def command(self) -> list[str]:
        """The configured argv."""
        argv = self.setting("executor.command")
        if not argv:
            raise ExecutorError("not_found", "executor.command is not set; give the argv of a program that "
                                "reads the prompt on stdin and prints the reply")
        return list(argv) + list(self.setting("executor.extra_args") or [])

    def argv0(self) -> str:
        argv = self.setting("executor.command")
        return argv[0] if argv else "command"

    def available(self) -> tuple[bool, str]:
        """Whether executor.command is set and its program is on PATH."""
        if not self.setting("executor.command"):
            return False, "executor.command is not set"
        return super().available()

    def run(self, req: ExecRequest) -> ExecResult:
        """Run the command once with the prompt on stdin."""
        result = self.spawn(req, self.command(), req.prompt)
        if result.returncode == EX_TEMPFAIL:
            raise ExecutorError("transient", _exit_message(self.argv0(), result))
        if result.returncode != 0:
            raise ExecutorError("exit_error", _exit_message(self.argv0(), result))
        text = result.stdout.strip()
        if not text:
            raise ExecutorError("bad_output", f"{self.argv0()} printed nothing on stdout")
        return ExecResult(text=text)


def _exit_message(name: str, result: ProcessResult) -> str:
    tail = result.stderr_tail.strip()[-1000:]
    return f"{Path(name).name} exited with status {result.returncode}" + (f": {tail}" if tail else "")
