"""Run one agent process: own process group, prompt on stdin, stdout by line, timeout and cancel.

Whatever happens (normal exit, timeout, cancel, a crash of a callback), ``run_process`` returns or
raises only after every process of the spawned group is gone, and every descendant seen during the
run too (agents start tool commands in sessions of their own): leftover children of a finished
leader are killed as well, because an agent's helper outliving its run is an orphan.
"""

from __future__ import annotations

import codecs
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
from .guard import GUARD

logger = logging.getLogger(__name__)

#: Seconds between two looks at the cancel event and the deadline.
POLL_SEC = 0.05
#: Seconds a group gets between SIGTERM and SIGKILL.
KILL_GRACE_SEC = 2.0
#: Bytes of stderr kept for error messages.
STDERR_TAIL_BYTES = 4096
#: Seconds between two looks at the run's descendants (to kill those that left the group).
TRACK_SEC = 0.25
#: Seconds a run lasts before its process group is reported to ``on_spawn`` (for crash cleanup).
SPAWN_REPORT_SEC = 0.05
#: A prompt up to this size is written to the child's stdin pipe directly (the pipe buffer holds 64 KiB).
INLINE_STDIN_BYTES = 16384
#: Seconds the stdout reader may lag behind the leader's exit before lingering children are killed.
DRAIN_SEC = 2.0


@dataclass
class ProcessResult:
    """What a finished process left behind."""

    returncode: int
    stdout: str
    stderr_tail: str
    duration: float
    #: True when the caller's ``stop`` event ended the run early (its output so far is kept).
    stopped: bool = False


def run_process(argv: Sequence[str], *, stdin_text: str | None = None, env: Mapping[str, str] | None = None,
                cwd: str | os.PathLike | None = None, timeout: float, cancel: threading.Event,
                on_stdout_line: Callable[[str], None] | None = None,
                on_spawn: Callable[[int], None] | None = None,
                on_stdout_chunk: Callable[[str], None] | None = None,
                stop: threading.Event | None = None) -> ProcessResult:
    """Run ``argv`` (never through a shell) in a new process group; raise ExecutorError on timeout/cancel.

    ``on_spawn(pgid)`` is called once the process has run for SPAWN_REPORT_SEC (a run that ends sooner has
    nothing left to kill after a crash, and saves the caller a database write). ``on_stdout_chunk`` gets the
    output as it arrives (a streaming reply without newlines); setting ``stop`` ends the run early as done,
    the group killed and ``stopped`` true."""
    started = time.monotonic()
    proc = _spawn(argv, stdin_text, env, cwd)
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    lines: list[str] = []
    tail: deque[bytes] = deque()
    threads = [
        _thread(_read_stdout, proc.stdout, lines, on_stdout_line, on_stdout_chunk),
        _thread(_read_stderr, proc.stderr, tail),
    ]
    if stdin_text is not None:
        data = stdin_text.encode("utf-8")
        if len(data) <= INLINE_STDIN_BYTES:  # fits the pipe's buffer: no thread needed
            _write_stdin(proc.stdin, data)
        else:
            threads.append(_thread(_write_stdin, proc.stdin, data))
    tree = ProcessTree(pgid)
    try:
        outcome = _wait(proc, threads[0], tree, cancel, started + timeout,
                        on_spawn and (lambda: on_spawn(pgid)), stop)
    except BaseException:
        _reap(proc, tree)
        raise
    _reap(proc, tree)
    for t in threads:
        t.join(timeout=1.0)
    stderr_tail = b"".join(tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
    name = Path(argv[0]).name
    if outcome == "timeout":
        raise ExecutorError("timeout", f"{name} did not finish within {timeout:g} s; it was stopped "
                            f"(process group {pgid} killed)")
    if outcome == "cancelled":
        raise ExecutorError("cancelled", f"{name} was cancelled; process group {pgid} killed")
    return ProcessResult(proc.returncode, "".join(lines), stderr_tail, time.monotonic() - started,
                         stopped=outcome == "stopped")


def _die_with_parent() -> None:
    """In the child (only where the guard cannot run): get SIGKILL if the worker dies (Linux PR_SET_PDEATHSIG).
    A ``preexec_fn`` forces a full fork() of the worker (page tables of the loaded model included)."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _load_libc():
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_libc = _load_libc()
#: The dead-worker guarantee: the guard process (executors/guard.py) where /bin/sh exists, else PDEATHSIG.
_GUARDED = GUARD.available()


def _spawn(argv: Sequence[str], stdin_text: str | None, env: Mapping[str, str] | None,
           cwd: str | os.PathLike | None) -> subprocess.Popen:
    if not argv:
        raise ExecutorError("not_found", "empty executor command")
    if cwd is not None and not os.path.isdir(cwd):
        raise ExecutorError("exit_error", f"working directory {cwd} does not exist")
    command, preexec = list(argv), None if _GUARDED else _die_with_parent
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
            cwd=cwd, start_new_session=True, close_fds=True, preexec_fn=preexec)
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename is not None and str(exc.filename) == str(cwd):
            raise ExecutorError("exit_error", f"working directory {cwd} does not exist") from None
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' not found on PATH; "
                            "install it or set executor.name") from None
    except PermissionError:
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' is not executable") from None
    if _GUARDED:
        try:
            GUARD.watch(proc.pid)  # start_new_session=True: the leader's pid is the group id
        except OSError:
            _kill_now(proc)
            raise ExecutorError("internal", "the dead-worker guard could not be started; the agent was stopped")
    return proc


def _kill_now(proc: subprocess.Popen) -> None:
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _reap(proc: subprocess.Popen, tree: ProcessTree) -> None:
    """Kill what is left of the run's processes, tell the guard its group is gone, reap the leader."""
    tree.kill()
    if _GUARDED:
        GUARD.unwatch(tree.pgid)  # before the reap: the leader's pid is not reused while it is a zombie
    proc.wait()


def _wait(proc: subprocess.Popen, reader: threading.Thread, tree: ProcessTree, cancel: threading.Event,
          deadline: float, on_running: Callable[[], None] | None, stop: threading.Event | None = None) -> str:
    """Wait for the leader to exit and stdout to drain; return 'done', 'timeout', 'cancelled' or 'stopped'.

    The leader's exit is noticed within a millisecond or so (``Popen.wait`` backs off from 0.5 ms), cancel and
    the deadline within POLL_SEC."""
    started = time.monotonic()
    drain_until = None
    next_scan = 0.0
    while True:
        now = time.monotonic()
        if now >= next_scan:  # learn the descendants while their parents still live
            tree.scan()
            next_scan = now + TRACK_SEC
        if on_running is not None and now - started >= SPAWN_REPORT_SEC and proc.returncode is None:
            on_running()
            on_running = None
        if cancel.is_set():
            return "cancelled"
        if stop is not None and stop.is_set():
            return "stopped"
        if now >= deadline:
            return "timeout"
        if proc.poll() is not None:
            drain_until = drain_until or now + DRAIN_SEC
            reader.join(timeout=max(0.0, min(POLL_SEC, drain_until - now, deadline - now)))
            if not reader.is_alive() or time.monotonic() >= drain_until:
                return "done"  # a child still holding stdout open is killed by the caller
            continue
        slice_sec = min(POLL_SEC, next_scan - now, deadline - now)
        if on_running is not None:
            slice_sec = min(slice_sec, started + SPAWN_REPORT_SEC - now)
        try:
            proc.wait(timeout=max(0.0005, slice_sec))
        except subprocess.TimeoutExpired:
            pass


def _thread(target: Callable, *args: object) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True, name=f"exec-{target.__name__}")
    t.start()
    return t


def _read_stdout(stream, lines: list[str], on_line: Callable[[str], None] | None,
                 on_chunk: Callable[[str], None] | None = None) -> None:
    if on_chunk is not None:  # as it arrives, not by line
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for raw in iter(lambda: stream.read1(4096), b""):
            text = decoder.decode(raw)
            lines.append(text)
            try:
                on_chunk(text)
            except Exception:
                logger.exception("stdout chunk callback failed")
        stream.close()
        return
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


def _write_stdin(stream, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the process exited without reading all of it; its exit status tells the story


class ProcessTree:
    """The processes of one run: its process group plus every descendant seen, even one that called
    setsid() (claude's Bash tool and codex's sandboxed commands do). Pids are kept with their start
    time, so a recycled pid is never signalled. Descendants are looked for every TRACK_SEC while their
    parent lives: one that leaves the group and loses its parent in between is not found. Without
    /proc only the group is known.

    Looking costs a few small reads: the children lists of the known processes
    (``/proc/<pid>/task/<tid>/children``); only a kernel without them makes every look read all of /proc."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self.known: dict[int, int] = {}  # pid -> start time (clock ticks since boot)
        stat = _stat(pgid)
        if stat is not None and stat[1] == pgid:
            self.known[pgid] = stat[2]

    def scan(self) -> None:
        """Add the descendants of every known live process (and, without children lists, the group's members)."""
        if not _HAS_CHILDREN_LISTS:
            return self._scan_table()
        todo = list(self.known)
        while todo:
            pid = todo.pop()
            children = [c for c in _children(pid) if c not in self.known]
            if not children:
                continue
            parent = _stat(pid)  # read after the list: a pid recycled meanwhile does not lend us its children
            if parent is None or parent[2] != self.known[pid]:
                continue
            for child in children:
                stat = _stat(child)
                if stat is not None:
                    self.known[child] = stat[2]
                    todo.append(child)

    def _scan_table(self) -> None:
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
        out = []
        for pid, start in self.known.items():
            stat = _stat(pid)
            if stat is not None and stat[2] == start:
                out.append(pid)
        return out

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
        return bool(self.alive()) or group_alive(self.pgid)

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


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, start time) of a live, non-zombie process; None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (empty when it is gone)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, start time) of every live, non-zombie process; empty without /proc."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for name in entries:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


_HAS_CHILDREN_LISTS = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process belongs to process group ``pgid``."""
    try:
        os.killpg(pgid, 0)  # no member at all (the usual answer after a run): no need to read /proc
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not os.path.isdir("/proc"):
        return True
    return any(pgrp == pgid for _, pgrp, _ in _proc_table().values())


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
