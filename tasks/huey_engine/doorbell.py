"""Doorbells: a stage queued on this host wakes an idle consumer thread at once instead of at its next poll.

SqliteHuey has no blocking read, so idle worker threads poll (20 ms backing off to 250 ms): a message sent to
an idle worker waited up to a poll interval, three times per job. Now every ``alter0 worker`` on the Huey
engine listens on an abstract unix datagram socket named after its queue file and pid, and leaves a marker
file ``<queue dir>/doorbells/<host>-<pid>``. After each enqueue, HueyQueue rings the workers of its host (one
datagram each; a refused one is a dead worker's marker, removed); a ring wakes one idle thread, which polls at
once. A worker ringing its own doorbell (a stage queueing the next one) skips the datagram and wakes its thread
directly, and the markers are listed again only when the directory changed. Best effort: a lost ring costs one
poll interval and nothing else -- the queue store stays the truth.
Processes on other hosts or in other containers (another hostname) are never rung: they poll as before.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

HOST = socket.gethostname()
#: Rings kept for threads not yet asleep (a ring that came while every thread was busy).
MAX_PENDING = 4


class Doorbell:
    """The doorbells of one queue file: ``ring`` after an enqueue, ``listen`` + ``wait`` in a worker."""

    def __init__(self, queue_file: str | os.PathLike):
        self.dir = Path(queue_file).parent / "doorbells"
        self.key = hashlib.sha1(str(Path(queue_file).resolve()).encode()).hexdigest()[:16]
        self.cond = threading.Condition()
        self.pending = 0  # rings no sleeping thread has taken yet (bounded: a burst needs only a few polls)
        self.marker: Path | None = None
        self._sender: socket.socket | None = None
        self._sender_lock = threading.Lock()
        self._own = ""  # this process's marker name once it listens
        self._names: tuple[int, list[str]] = (-1, [])  # the markers of this host, by the directory's mtime

    def _address(self, pid: int | str) -> bytes:
        return f"\0alter0-doorbell-{self.key}-{pid}".encode()

    def listen(self) -> bool:
        """Bind this process's doorbell and leave its marker (False where abstract unix sockets do not exist)."""
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(self._address(os.getpid()))
            self.dir.mkdir(parents=True, exist_ok=True)
            self.marker = self.dir / f"{HOST}-{os.getpid()}"
            self.marker.touch()
            self._own = self.marker.name
        except (OSError, AttributeError):
            return False
        threading.Thread(target=self._answer, args=(sock,), name="alter0-doorbell", daemon=True).start()
        return True

    def _answer(self, sock: socket.socket) -> None:
        while True:
            sock.recv(16)
            self._wake()

    def _wake(self) -> None:
        with self.cond:
            self.pending = min(self.pending + 1, MAX_PENDING)
            self.cond.notify()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds unless a ring came (or comes meanwhile); True when one did."""
        with self.cond:
            if not self.pending:
                self.cond.wait(timeout)
            if self.pending:
                self.pending -= 1
                return True
            return False

    def wake_all(self) -> None:
        """End every sleep now (the consumer is stopping)."""
        with self.cond:
            self.cond.notify_all()

    def close(self) -> None:
        """Take this process's marker away (a worker that stops)."""
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)

    def _socket(self) -> socket.socket:
        with self._sender_lock:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            return self._sender

    def _markers(self) -> list[str]:
        """The markers of this host's workers (listed again only when the directory changed)."""
        mtime = os.stat(self.dir).st_mtime_ns
        if self._names[0] != mtime:
            self._names = (mtime, [n for n in os.listdir(self.dir) if n.startswith(HOST + "-")])
        return self._names[1]

    def ring(self) -> None:
        """Tell every worker of this host listening on this queue that a message is waiting."""
        try:
            names = self._markers()
        except OSError:
            return
        for name in names:
            if name == self._own:
                self._wake()  # this process: no datagram, no thread switch to the listener
                continue
            try:
                self._socket().sendto(b"!", self._address(name[len(HOST) + 1:]))
            except ConnectionRefusedError:  # nobody listens there: the marker of a worker that died
                (self.dir / name).unlink(missing_ok=True)
            except OSError:
                pass  # its buffer is full (it has rings to answer) or sockets are unavailable: it polls


_bells: dict[str, Doorbell] = {}
_lock = threading.Lock()


def doorbell_for(queue_file: str | os.PathLike) -> Doorbell:
    """The process's Doorbell of this queue file."""
    with _lock:
        key = str(queue_file)
        if key not in _bells:
            _bells[key] = Doorbell(queue_file)
        return _bells[key]
