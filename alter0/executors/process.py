"""Run one agent process: own process group, prompt on stdin, stdout by line, timeout and cancel.

Whatever happens (normal exit, timeout, cancel, a crash of a callback), ``run_process`` returns or
raises only after every process of the spawned group is gone, and every descendant seen during the
run too (agents start tool commands in sessions of their own): leftover children of a finished
leader are killed as well, because an agent's helper outliving its run is an orphan.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import ExecutorError

logger = logging.getLogger(__name__)

#: Seconds between two looks at the cancel event and the deadline.
POLL_SEC = 0.05
#: Seconds a group gets between SIGTERM and SIGKILL.
KILL_GRACE_SEC = 2.0
#: Bytes of stderr kept for error messages.
STDERR_TAIL_BYTES = 4096
#: Seconds between two looks at the run's descendants (to kill those that left the group).
TRACK_SEC = 0.25
#: Seconds the stdout reader may lag behind the leader's exit before lingering children are killed.
DRAIN_SEC = 2.0


@dataclass
class ProcessResult:
    """What a finished process left behind."""

    returncode: int
    stdout: str
    stderr_tail: str
    duration: float


def run_process(argv: Sequence[str], *, stdin_text: str | None = None, env: Mapping[str, str] | None = None,
                cwd: str | os.PathLike | None = None, timeout: float, cancel: threading.Event,
                on_stdout_line: Callable[[str], None] | None = None,
                on_spawn: Callable[[int], None] | None = None) -> ProcessResult:
    """Run ``argv`` (never through a shell) in a new process group; raise ExecutorError on timeout/cancel."""
    started = time.monotonic()
    proc = _spawn(argv, stdin_text, env, cwd)
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    lines: list[str] = []
    tail: deque[bytes] = deque()
    threads = [
        _thread(_read_stdout, proc.stdout, lines, on_stdout_line),
        _thread(_read_stderr, proc.stderr, tail),
    ]
    if stdin_text is not None:
        threads.append(_thread(_write_stdin, proc.stdin, stdin_text))
    tree = ProcessTree(pgid)
    try:
        if on_spawn:
            on_spawn(pgid)
        outcome = _wait(proc, threads[0], tree, cancel, started + timeout)
    except BaseException:
        tree.kill()
        proc.wait()
        raise
    tree.kill()
    proc.wait()
    for t in threads:
        t.join(timeout=1.0)
    stderr_tail = b"".join(tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
    name = Path(argv[0]).name
    if outcome == "timeout":
        raise ExecutorError("timeout", f"{name} did not finish within {timeout:g} s; it was stopped "
                            f"(process group {pgid} killed)")
    if outcome == "cancelled":
        raise ExecutorError("cancelled", f"{name} was cancelled; process group {pgid} killed")
    return ProcessResult(proc.returncode, "".join(lines), stderr_tail, time.monotonic() - started)


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the worker dies (Linux PR_SET_PDEATHSIG), so a crash leaves no agent behind."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _load_libc():
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_libc = _load_libc()


def _spawn(argv: Sequence[str], stdin_text: str | None, env: Mapping[str, str] | None,
           cwd: str | os.PathLike | None) -> subprocess.Popen:
    if not argv:
        raise ExecutorError("not_found", "empty executor command")
    try:
        return subprocess.Popen(
            list(argv), stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
            cwd=cwd, start_new_session=True, close_fds=True, preexec_fn=_die_with_parent)
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename is not None and str(exc.filename) == str(cwd):
            raise ExecutorError("exit_error", f"working directory {cwd} does not exist") from None
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' not found on PATH; "
                            "install it or set executor.name") from None
    except PermissionError:
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' is not executable") from None


def _wait(proc: subprocess.Popen, reader: threading.Thread, tree: ProcessTree, cancel: threading.Event,
          deadline: float) -> str:
    """Wait for the leader to exit and stdout to drain; return 'done', 'timeout' or 'cancelled'."""
    drain_until = None
    next_scan = 0.0
    while True:
        if time.monotonic() >= next_scan:  # learn the descendants while their parents still live
            tree.scan()
            next_scan = time.monotonic() + TRACK_SEC
        if cancel.is_set():
            return "cancelled"
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        if proc.poll() is not None:
            drain_until = drain_until or now + DRAIN_SEC
            if not reader.is_alive() or now >= drain_until:
                return "done"  # a child still holding stdout open is killed by the caller
        cancel.wait(POLL_SEC)


def _thread(target: Callable, *args: object) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True, name=f"exec-{target.__name__}")
    t.start()
    return t


def _read_stdout(stream, lines: list[str], on_line: Callable[[str], None] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        if on_line:
            try:
                on_line(line)
            except Exception:  # a progress callback must not stop the reading
                logger.exception("stdout line callback failed")
    stream.close()


def _read_stderr(stream, tail: deque[bytes]) -> None:
    size = 0
    for chunk in iter(lambda: stream.read1(4096), b""):
        tail.append(chunk)
        size += len(chunk)
        while size - len(tail[0]) >= STDERR_TAIL_BYTES and len(tail) > 1:
            size -= len(tail.popleft())
    stream.close()


def _write_stdin(stream, text: str) -> None:
    try:
        stream.write(text.encode("utf-8"))
        stream.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the process exited without reading all of it; its exit status tells the story


class ProcessTree:
    """The processes of one run: its process group plus every descendant seen, even one that called
    setsid() (claude's Bash tool and codex's sandboxed commands do). Pids are kept with their start
    time, so a recycled pid is never signalled. Descendants are looked for every TRACK_SEC while their
    parent lives: one that leaves the group and loses its parent in between is not found. Without
    /proc only the group is known."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self.known: dict[int, int] = {}  # pid -> start time (clock ticks since boot)

    def scan(self) -> None:
        """Add the group's members and the descendants of every known process."""
        table = _proc_table()
        changed = True
        while changed:
            changed = False
            for pid, (ppid, pgrp, start) in table.items():
                if pid in self.known:
                    continue
                parent_known = ppid in self.known and ppid in table and table[ppid][2] == self.known[ppid]
                if pgrp == self.pgid or parent_known:
                    self.known[pid] = start
                    changed = True

    def alive(self) -> list[int]:
        """Known pids still running (same start time, not a zombie)."""
        table = _proc_table()
        return [pid for pid, start in self.known.items() if pid in table and table[pid][2] == start]

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the group and to every known live process."""
        _signal_group(self.pgid, sig)
        for pid in self.alive():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def running(self) -> bool:
        """True while the group or a known descendant is alive."""
        return group_alive(self.pgid) or bool(self.alive())

    def kill(self, grace: float = KILL_GRACE_SEC) -> None:
        """SIGTERM everything, wait up to ``grace`` seconds, then SIGKILL what is left."""
        self.scan()
        if not self.running():
            return
        self.signal(signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            self.scan()  # children spawned while shutting down
            if not self.running():
                return
            time.sleep(0.02)
        self.signal(signal.SIGKILL)
        end = time.monotonic() + 5.0
        while self.running() and time.monotonic() < end:
            time.sleep(0.02)


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, start time) of every live, non-zombie process; empty without /proc."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] not in ("Z", "X"):
            table[int(name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process belongs to process group ``pgid``."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    return any(pgrp == pgid for _, pgrp, _ in _proc_table().values())


def kill_group(pgid: int, grace: float = KILL_GRACE_SEC) -> None:
    """Kill process group ``pgid`` and the descendants of its live members (SIGTERM, grace, SIGKILL)."""
    ProcessTree(pgid).kill(grace)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
