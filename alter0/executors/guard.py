"""The dead-worker guard: the process groups of a worker's running agents are killed when the worker dies.

One small ``/bin/sh`` process per worker process, started with the first agent run, in a session of its own
(a signal to the worker's group does not reach it). It reads lines from a pipe whose only writer is the
worker: ``+<pgid>`` when an agent's group starts, ``-<pgid>`` when it is gone. When the worker dies, however
it dies (SIGKILL included), the kernel closes the pipe; the guard reads end-of-file and SIGKILLs every group
still listed, then every process that carries the worker's mark and exits.

The mark (``MARK=<token of this worker>`` in the agent's environment, which its children inherit) covers
the moment between an agent's spawn and its ``+<pgid>`` line: a worker killed there leaves an agent no list
names, which would otherwise run on as an orphan with an empty prompt. The guard is started before the
first spawn (``mark``), so no agent ever runs without one.

The guard replaces PR_SET_PDEATHSIG, which needed either an extra exec of ``setpriv`` per run (~2 ms of CPU)
or a ``preexec_fn`` that turns the worker's vfork into a full fork (~12 ms with the router's model loaded),
and which killed the leader only: the guard kills the whole group.

A guard that died (killed by hand) is started again at the next run, and told the groups still running.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import threading
from typing import Mapping

logger = logging.getLogger(__name__)

SHELL = "/bin/sh"
#: The environment variable that marks an agent (and its children) as this worker's.
MARK = "ALTER0_AGENT_OF"
#: dash/bash: builtins only while the worker lives (no fork per line); at end-of-file, kill what is listed,
#: then what carries the mark ($1: MARK=token; one grep over the processes' environments, never its own).
SCRIPT = r"""
trap '' HUP INT TERM QUIT
g=" "
while IFS= read -r l; do
  case "$l" in
    +*) g="$g${l#+} " ;;
    -*) p="${l#-}"; case "$g" in *" $p "*) g="${g%% $p *} ${g#* $p }" ;; esac ;;
  esac
done
for p in $g; do kill -9 "-$p" 2>/dev/null; done
for f in $(grep -lsaF -- "$1" /proc/[0-9]*/environ 2>/dev/null); do
  p="${f#/proc/}"; kill -9 "${p%/environ}" 2>/dev/null
done
"""


class Guard:
    """The guard of this process (``GUARD``): ``watch(pgid)`` right after a spawn, ``unwatch(pgid)`` after the
    group is gone. Thread-safe; fork-aware (a forked child starts its own guard)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0  # the pid that started _proc
        self._groups: set[int] = set()
        self._token = ""  # this process's mark (a forked child gets its own)

    def available(self) -> bool:
        return os.path.exists(SHELL)

    def _start(self) -> None:
        if self._owner != os.getpid():
            self._token = secrets.token_hex(16)
        self._proc = subprocess.Popen([SHELL, "-c", SCRIPT, "alter0-guard", f"{MARK}={self._token}"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True, close_fds=True, bufsize=0)
        self._owner = os.getpid()
        if self._groups:
            self._proc.stdin.write("".join(f"+{g}\n" for g in self._groups).encode())

    def _running(self) -> None:
        if self._proc is None or self._owner != os.getpid() or self._proc.poll() is not None:
            if self._proc is not None and self._owner == os.getpid():
                logger.warning("the dead-worker guard (pid %s) exited; starting another", self._proc.pid)
            self._start()

    def mark(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """The environment to spawn an agent with: ``env`` (None: this process's) plus this worker's mark, the
        guard started first, so the agent is killed with the worker even before ``watch``."""
        with self._lock:
            self._running()
            return {**(os.environ if env is None else env), MARK: self._token}

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before ``unwatch(pgid)``. A guard that exited since ``mark``
        looked is noticed by the write (its pipe has no reader left) and replaced; the new one is told every
        listed group, this one included, once: a second ``+`` line would outlive the ``unwatch``, and the guard
        would kill a group id reused by then when the worker dies."""
        with self._lock:
            self._groups.add(pgid)
            if self._proc is None or self._owner != os.getpid():
                self._start()
                return
            try:
                self._proc.stdin.write(f"+{pgid}\n".encode())
            except (BrokenPipeError, OSError):
                logger.warning("the dead-worker guard (pid %s) exited; starting another", self._proc.pid)
                self._proc = None
                self._start()

    def unwatch(self, pgid: int) -> None:
        """Group ``pgid`` is gone: forget it."""
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                if self._proc is not None and self._owner == os.getpid():
                    try:
                        self._proc.stdin.write(f"-{pgid}\n".encode())
                    except (BrokenPipeError, OSError):
                        self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


GUARD = Guard()
