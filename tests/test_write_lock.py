"""The host-wide write lock (alter0.database.WriteLock): one writer at a time among the threads of a process and
the processes of a host. (How long another process waits while one is busy is a benchmark figure, not a test:
`bench/pipeline`'s POST /api/jobs p99; handing the file lock from thread to thread, tried once, tripled it.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from alter0.database import WriteLock
from support.helpers import ROOT, wait_until

ROUNDS = 60
WRITER = """
import os, sys, time
from alter0.database import WriteLock
lock, log = WriteLock(sys.argv[1], 30), sys.argv[2]
for i in range({rounds}):
    with lock:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"P+\\n"); time.sleep(0.001); os.write(fd, b"P-\\n")
        os.close(fd)
    time.sleep(0.001)
"""


def test_threads_and_another_process_enter_one_at_a_time(tmp_path):
    # Given a lock file, a log, another process entering the lock 60 times (writing "+" on entry, "-" on exit)
    path, log = tmp_path / "db-writelock", tmp_path / "log"
    log.write_bytes(b"")
    other = subprocess.Popen([sys.executable, "-c", WRITER.format(rounds=ROUNDS), str(path), str(log)],
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wait_until(lambda: log.read_bytes(), 30, "the other process to start writing")
    lock = WriteLock(path, 30)

    def threads_write(name: bytes):
        for _ in range(ROUNDS):
            with lock:
                with open(log, "ab", buffering=0) as fh:
                    fh.write(name + b"+\n")
                    time.sleep(0.001)
                    fh.write(name + b"-\n")

    # When four threads of this process do the same at the same time
    workers = [threading.Thread(target=threads_write, args=(f"T{i}".encode(),)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert other.wait(60) == 0
    # Then nobody entered while someone else was inside (every "+" is followed by its own "-")
    lines = log.read_bytes().split()
    assert len(lines) == 2 * 5 * ROUNDS
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.endswith(b"+") and leave == enter[:-1] + b"-", (enter, leave)
