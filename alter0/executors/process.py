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
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .. import faults
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
    tree = ProcessTree(proc)
    pgid = tree.pgid
    pipes = None
    try:
        try:
            pipes = _Pipes(proc, stdin_text, on_stdout_line, on_stdout_chunk)
            outcome = _wait(proc, pipes, tree, cancel, started + timeout,
                            on_spawn and (lambda: on_spawn(pgid)), stop)
        except BaseException:
            _reap(proc, tree)
            raise
        _reap(proc, tree)
        pipes.finish(time.monotonic() + 1.0)  # what is left in the pipes once every process is gone
    finally:
        if pipes is not None:
            pipes.close()
    name = Path(argv[0]).name
    if outcome == "timeout":
        raise ExecutorError("timeout", f"{name} did not finish within {timeout:g} s; it was stopped "
                            f"(process group {pgid} killed)")
    if outcome == "cancelled":
        raise ExecutorError("cancelled", f"{name} was cancelled; process group {pgid} killed")
    return ProcessResult(proc.returncode, "".join(pipes.lines), pipes.stderr_tail(), time.monotonic() - started,
                         stopped=outcome == "stopped")


def _die_with_parent(worker: int) -> Callable[[], None]:
    """The ``preexec_fn`` where the guard cannot run: the child gets SIGKILL if the worker dies (Linux
    PR_SET_PDEATHSIG), and exits at once if the worker died before that was set. A ``preexec_fn`` forces a
    full fork() of the worker (page tables of the loaded model included)."""
    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != worker:
                os._exit(1)
    return preexec


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
    if _GUARDED:
        try:
            env, preexec = GUARD.mark(env), None
        except OSError:
            raise ExecutorError("internal", "the dead-worker guard could not be started; the agent was not run") \
                from None
    else:
        env, preexec = (dict(env) if env is not None else None), _die_with_parent(os.getpid())
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=cwd, start_new_session=True, close_fds=True, preexec_fn=preexec)
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename is not None and str(exc.filename) == str(cwd):
            raise ExecutorError("exit_error", f"working directory {cwd} does not exist") from None
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' not found on PATH; "
                            "install it or set executor.name") from None
    except PermissionError:
        raise ExecutorError("not_found", f"executor binary '{argv[0]}' is not executable") from None
    faults.kill_point("agent_spawned")  # a worker dying here: the agent carries the mark, the guard kills it
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


def _wait(proc: subprocess.Popen, pipes: "_Pipes", tree: ProcessTree, cancel: threading.Event,
          deadline: float, on_running: Callable[[], None] | None, stop: threading.Event | None = None) -> str:
    """Serve the pipes until the leader has exited and stdout is drained; return 'done', 'timeout',
    'cancelled' or 'stopped'.

    The leader's exit is noticed at once (its pidfd; without one, its stdout closing or the next POLL_SEC),
    cancel and the deadline within POLL_SEC."""
    started = time.monotonic()
    drain_until = None
    next_scan = started + SPAWN_REPORT_SEC  # the leader has only just been exec'd: no descendant to find yet
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
        if proc.returncode is not None or proc.poll() is not None:
            drain_until = drain_until or now + DRAIN_SEC
            if not pipes.stdout_open or now >= drain_until:
                return "done"  # a child still holding stdout open is killed by the caller
            pipes.serve(max(0.0, min(POLL_SEC, drain_until - now, deadline - now)))
            continue
        slice_sec = min(POLL_SEC, next_scan - now, deadline - now)
        if on_running is not None:
            slice_sec = min(slice_sec, started + SPAWN_REPORT_SEC - now)
        if pipes.waits_for_exit():
            pipes.serve(max(0.0, slice_sec))
        else:  # nothing left to select on (no pidfd, pipes closed): the leader's exit by polling
            try:
                proc.wait(timeout=max(0.0005, slice_sec))
            except subprocess.TimeoutExpired:
                pass


_pidfd_open = getattr(os, "pidfd_open", None)


class _Pipes:
    """The run's stdout (by line, or by chunk as it arrives), the tail of its stderr, a prompt too big for the
    pipe's buffer, and the leader's exit (a pidfd where the kernel has them): all served by one poll(2) set in
    the calling thread, so a run starts no thread of its own (poll, not epoll: a set of three descriptors used
    once costs no descriptor and no system call to set up)."""

    def __init__(self, proc: subprocess.Popen, stdin_text: str | None, on_line: Callable[[str], None] | None,
                 on_chunk: Callable[[str], None] | None):
        self.poll = select.poll()
        self.watched: dict[int, tuple[object, str]] = {}  # fd -> (stream or pidfd, "out" | "err" | "in" | "exit")
        self.on_line, self.on_chunk = on_line, on_chunk
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace") if on_chunk is not None else None
        self.lines: list[str] = []
        self.partial = bytearray()  # stdout after its last newline
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.stdin_left = memoryview(b"")
        self.stdout_open = True
        self.pidfd: int | None = None
        for stream, kind in ((proc.stdout, "out"), (proc.stderr, "err")):
            os.set_blocking(stream.fileno(), False)
            self._watch(stream.fileno(), stream, kind, select.POLLIN)
        if stdin_text is not None:
            data = stdin_text.encode("utf-8")
            if len(data) <= INLINE_STDIN_BYTES:  # fits the pipe's buffer: written at once
                _write_stdin(proc.stdin, data)
            else:
                os.set_blocking(proc.stdin.fileno(), False)
                self.stdin_left = memoryview(data)
                self._watch(proc.stdin.fileno(), proc.stdin, "in", select.POLLOUT)
        if _pidfd_open is not None:
            try:
                self.pidfd = _pidfd_open(proc.pid)
                self._watch(self.pidfd, self.pidfd, "exit", select.POLLIN)
            except OSError:  # a kernel without pidfds: the exit is polled
                self.pidfd = None

    def _watch(self, fd: int, obj, kind: str, events: int) -> None:
        self.watched[fd] = (obj, kind)
        self.poll.register(fd, events)

    def _unwatch(self, fd: int) -> None:
        del self.watched[fd]
        self.poll.unregister(fd)

    def waits_for_exit(self) -> bool:
        """Whether ``serve`` returns when the leader exits (its pidfd, or its stdout still open)."""
        return self.pidfd is not None or self.stdout_open

    def serve(self, timeout: float) -> None:
        """Read and write what is ready within ``timeout`` seconds (returns at the first events)."""
        for fd, _ in self.poll.poll(timeout * 1000):
            watched = self.watched.get(fd)
            if watched is None:  # unwatched by an earlier event of this round
                continue
            obj, kind = watched
            if kind == "out":
                self._stdout(obj)
            elif kind == "err":
                self._stderr(obj)
            elif kind == "in":
                self._stdin(obj)
            else:  # the leader exited: its pidfd stays readable, so it is polled no more
                self._unwatch(fd)

    def finish(self, until: float) -> None:
        """Read stdout and stderr to their end (every writer is gone), for at most until the given time."""
        while any(kind in ("out", "err") for _, kind in self.watched.values()):
            left = until - time.monotonic()
            if left <= 0:
                break
            self.serve(left)

    def _read(self, stream) -> bytes | None:
        """What the pipe holds now (None: nothing yet); b"" at its end, when it is also closed and unwatched."""
        try:
            raw = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return None
        except OSError:
            raw = b""
        if not raw:
            self._unwatch(stream.fileno())
            stream.close()
        return raw

    def _stdout(self, stream) -> None:
        raw = self._read(stream)
        if raw is None:
            return
        if not raw:
            self.stdout_open = False
            if self.decoder is not None:
                self._chunk(self.decoder.decode(b"", final=True))
            elif self.partial:
                self._line(bytes(self.partial))
                self.partial.clear()
            return
        if self.decoder is not None:  # as it arrives, not by line
            self._chunk(self.decoder.decode(raw))
            return
        start = len(self.partial)
        self.partial += raw
        end = self.partial.find(b"\n", start)
        begin = 0
        while end != -1:
            self._line(bytes(self.partial[begin:end + 1]))
            begin = end + 1
            end = self.partial.find(b"\n", begin)
        if begin:
            del self.partial[:begin]

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        self.lines.append(line)
        if self.on_line:
            try:
                self.on_line(line)
            except Exception:  # a progress callback must not stop the reading
                logger.exception("stdout line callback failed")

    def _chunk(self, text: str) -> None:
        if not text:
            return
        self.lines.append(text)
        try:
            self.on_chunk(text)
        except Exception:
            logger.exception("stdout chunk callback failed")

    def _stderr(self, stream) -> None:
        chunk = self._read(stream)
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        while self.tail_size - len(self.tail[0]) >= STDERR_TAIL_BYTES and len(self.tail) > 1:
            self.tail_size -= len(self.tail.popleft())

    def _stdin(self, stream) -> None:
        try:
            written = os.write(stream.fileno(), self.stdin_left[:65536])
        except BlockingIOError:
            return
        except OSError:  # the process exited without reading all of it; its exit status tells the story
            written = len(self.stdin_left)
        self.stdin_left = self.stdin_left[written:]
        if not self.stdin_left:
            self._unwatch(stream.fileno())
            try:
                stream.close()
            except OSError:
                pass

    def stderr_tail(self) -> str:
        return b"".join(self.tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")

    def close(self) -> None:
        """Close whatever is still open (a run that ended by timeout, cancel or an error)."""
        for fd, (obj, kind) in list(self.watched.items()):
            self._unwatch(fd)
            if kind != "exit":  # the pidfd is closed below, once
                try:
                    obj.close()
                except OSError:
                    pass
        if self.pidfd is not None:
            try:
                os.close(self.pidfd)
            except OSError:
                pass
            self.pidfd = None


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
    parent lives, first SPAWN_REPORT_SEC after the spawn (at once there is nothing to find yet): one that
    leaves the group and loses its parent in between is not found. Without /proc only the group is known.

    Looking costs a few small reads: the children lists of the known processes
    (``/proc/<pid>/task/<tid>/children``); only a kernel without them makes every look read all of /proc.

    The leader (``proc``, the group's first process) is learnt at the first look, not at the spawn: until this
    process reaps it its pid is not reused, and once reaped it has no children left to find. A run that ends
    before the first look (most short ones) reads nothing from /proc."""

    def __init__(self, proc: subprocess.Popen):
        self.pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
        self.known: dict[int, int] = {}  # pid -> start time (clock ticks since boot)
        self._leader: subprocess.Popen | None = proc  # not looked at yet

    def _learn_leader(self) -> None:
        proc, self._leader = self._leader, None
        if proc.returncode is None:  # not reaped: the pid is still the leader's (or its zombie's)
            stat = _stat(self.pgid)
            if stat is not None and stat[1] == self.pgid:
                self.known[self.pgid] = stat[2]

    def scan(self) -> None:
        """Add the descendants of every known live process (and, without children lists, the group's members)."""
        if self._leader is not None:
            self._learn_leader()
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
    stat = _read_proc(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _read_proc(path: str) -> bytes | None:
    """A /proc file's bytes (a few unbuffered reads: a run reads some ten of them), None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (empty when it is gone)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        listed = _read_proc(f"/proc/{pid}/task/{tid}/children")
        if listed:
            out.extend(int(x) for x in listed.split())
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
