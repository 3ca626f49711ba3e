"""What one message costs: the floor of this machine, fsyncs counted with strace, and a process's memory.

- ``floor``: in a fresh process, per message ``k`` durable commits (SQLite WAL, ``synchronous`` as alter0's, one
  row each) and one spawn of the executor's command fed the prompt on stdin (``cat``): CPU per message of that
  process and its children, measured here and now so the ratio to alter0 comes from the same run.
- ``count_fsyncs``: ``strace -f -c -e trace=fsync,fdatasync`` attached to running processes while some messages
  go through; the calls it counted.
- ``rss_kb``: a process's resident set (VmRSS) from /proc.
- ``context_switches``: voluntary and involuntary context switches of a process's live threads, from /proc.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .installs import BENCH

SYNCS = ("fsync", "fdatasync")
PROMPT = b"bench message floor-0\n" * 4


def rss_kb(pid: int) -> int:
    """The process's resident set size in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches so far, summed over the process's live threads."""
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def floor_main(commits: int, n: int, synchronous: str, command: list[str]) -> None:
    """Run the floor in this process and print its numbers as JSON (see the module's docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="alter0-floor-"))
    try:
        conn = sqlite3.connect(str(tmp / "floor.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, at REAL)")
        for _ in range(20):  # warm the file and the executable's page cache
            conn.execute("BEGIN IMMEDIATE"), conn.execute("INSERT INTO t (v, at) VALUES ('w', 0)"), conn.execute("COMMIT")
            subprocess.run(command, input=PROMPT, capture_output=True, check=True)
        c0, w0 = _cpu(), time.perf_counter()
        for i in range(n * commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v, at) VALUES (?, ?)", (f"message {i}", time.time()))
            conn.execute("COMMIT")
        c1, w1 = _cpu(), time.perf_counter()
        for _ in range(n):
            out = subprocess.run(command, input=PROMPT, capture_output=True, check=True).stdout
            assert out == PROMPT or command[0] != "cat"
        c2, w2 = _cpu(), time.perf_counter()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"commits": commits, "n": n, "synchronous": synchronous, "command": command,
                      "commit_cpu_ms": 1000 * (c1 - c0) / (n * commits), "commit_wall_ms": 1000 * (w1 - w0) / (n * commits),
                      "spawn_cpu_ms": 1000 * (c2 - c1) / n, "spawn_wall_ms": 1000 * (w2 - w1) / n,
                      "cpu_ms": 1000 * (c2 - c0) / n}))


def floor(commits: int, n: int, synchronous: str, command: list[str], env: dict) -> dict:
    """The floor measured in a fresh process (``floor_main``)."""
    code = (f"from pipeline_lib import cost; cost.floor_main({commits!r}, {n!r}, {synchronous!r}, {command!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600,
                         env={**env, "PYTHONPATH": os.pathsep.join([str(BENCH.parent), str(BENCH)])})
    return json.loads(out.stdout.strip().splitlines()[-1])


class FsyncCount:
    """``with FsyncCount([pid, ...]) as c: ...`` then ``c.calls``: fsync + fdatasync calls of those processes
    (every thread, and the children they start) while the block ran."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.calls: dict[str, int] = {}

    def __enter__(self) -> "FsyncCount":
        strace = shutil.which("strace")
        if strace is None:
            raise RuntimeError("strace is not installed (apt-get install strace): fsyncs cannot be counted")
        self.out = tempfile.NamedTemporaryFile(prefix="alter0-strace-", suffix=".txt", delete=False)
        argv = [strace, "-f", "-c", "-e", "trace=" + ",".join(SYNCS), "-o", self.out.name]
        for pid in self.pids:
            argv += ["-p", str(pid)]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        attached = 0
        while attached < len(self.pids) and time.monotonic() < deadline:  # "Process N attached" per process
            line = self.proc.stderr.readline()
            if not line:
                break
            attached += "attached" in line and any(f"Process {p} attached" in line for p in self.pids)
        if attached < len(self.pids):
            self.proc.kill()
            raise RuntimeError(f"strace did not attach to {self.pids}")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)  # strace detaches and writes its summary
        self.proc.communicate(timeout=60)
        text = Path(self.out.name).read_text()
        os.unlink(self.out.name)
        self.calls = {name: 0 for name in SYNCS}
        for line in text.splitlines():
            parts = line.split()
            if parts and parts[-1] in SYNCS and len(parts) >= 5:
                self.calls[parts[-1]] = int(parts[3])

    @property
    def total(self) -> int:
        return sum(self.calls.values())
