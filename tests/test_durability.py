"""What reaches the disk: durable commits are flushed one by one, the relaxed ones (a stage's claim, heartbeats,
Huey's messages in and out of its queue file) are not, on a thread's own connection as on the stage turn's. And
what is read back: stage threads taking turns keep their pages cached. Counted with strace on a real process
writing real files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from support.helpers import ROOT, skip_or_fail, write_config

N = 30

SCRIPT = """
import sys
from alter0.config import load_config
from alter0.database import write_tx
from alter0.migrations import open_current
from alter0.paths import ensure_dirs
from alter0 import jobstate
from alter0.inflight import STAGE_TURN
import contextlib
import threading
cfg = load_config(sys.argv[1], env={})
ensure_dirs(cfg.output_dir)
open_current(cfg)
mode, n = sys.argv[2], int(sys.argv[3])
if mode in ("durable", "relaxed", "durable-turn", "relaxed-turn", "alternate-turn"):
    print("START", flush=True)
    for i in range(n):
        durable = mode.startswith("durable") or (mode == "alternate-turn" and i % 2 == 0)
        with STAGE_TURN.held() if mode.endswith("turn") else contextlib.nullcontext():
            with write_tx(durable=durable):
                jobstate.create(content="x", user_id="u", scope="user:u")
    print("STOP", flush=True)
elif mode == "threads":  # two stage threads taking turns: a claim, a read, a durable write each turn
    with write_tx():
        job = jobstate.create(content="x", user_id="u", scope="user:u")
    for i in range(20):  # a table of some size
        with write_tx():
            for _ in range(50):
                jobstate.create(content="y" * 200, user_id="u", scope="user:u")
    turns = [threading.Semaphore(1), threading.Semaphore(0)]
    def stage_thread(me):
        for i in range(n):
            turns[me].acquire()
            with STAGE_TURN.held():
                if i == 0 and me == 0:
                    print("START", flush=True)
                with write_tx(durable=False):
                    jobstate.add_event(job.id, "stage.started", "route")
                jobstate.job_by_id(job.id)
                with write_tx():
                    jobstate.add_event(job.id, "stage.finished", "route")
            turns[1 - me].release()
    threads = [threading.Thread(target=stage_thread, args=(k,)) for k in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("STOP", flush=True)
elif mode in ("enqueue", "dequeue"):
    from tasks.huey_engine.app import binding_for
    huey = binding_for(cfg).huey
    storage = huey.storage
    if mode == "dequeue":
        for i in range(n):
            storage.enqueue(b"message")
    print("START", flush=True)
    for i in range(n):
        storage.enqueue(b"message") if mode == "enqueue" else storage.dequeue()
    print("STOP", flush=True)
"""


def flushes(tmp_path, mode: str, n: int) -> int:
    """fsync + fdatasync calls the script made between its START and STOP lines (not its set-up, nor the
    checkpoint SQLite makes when the process exits), counted by strace."""
    return syscalls(tmp_path, mode, n, ("fsync", "fdatasync"))


def syscalls(tmp_path, mode: str, n: int, names: tuple[str, ...]) -> int:
    """Calls of ``names`` the script made between its START and STOP lines, counted by strace."""
    strace = shutil.which("strace")
    if strace is None:
        skip_or_fail("strace is not installed (apt-get install strace)")
    cfg = write_config(tmp_path / mode)
    script = tmp_path / "commits.py"
    script.write_text(SCRIPT)
    out = subprocess.run([strace, "-f", "-qq", "-e", f"trace={','.join(names)},write", "-e", "signal=none",
                          sys.executable, str(script), str(cfg), mode, str(n)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "START" in line)
    stop = next(i for i, line in enumerate(lines) if "STOP" in line)
    return sum(1 for line in lines[start:stop] if any(f"{name}(" in line for name in names))


def test_durable_commits_are_flushed_one_by_one_and_relaxed_ones_not(tmp_path):
    assert flushes(tmp_path, "durable", N) >= N
    assert flushes(tmp_path, "relaxed", N) <= 2  # a new WAL's first frame and its directory entry are flushed


def test_in_the_stage_turn_too_and_a_relaxed_commit_does_not_relax_the_next(tmp_path):
    # the turn's one connection switches its setting for a relaxed commit, and back
    assert flushes(tmp_path, "durable-turn", N) >= N
    assert flushes(tmp_path, "relaxed-turn", N) <= 2
    assert N // 2 <= flushes(tmp_path, "alternate-turn", N) <= N // 2 + 2


def test_stage_threads_taking_turns_read_their_pages_once(tmp_path):
    # Two threads take turns, each turn a relaxed write (a claim), a read and a durable write (a stage's end).
    # SQLite drops a connection's page cache when another connection wrote: a connection per thread read every
    # page of each turn back from the files (some 10 per turn here); the turn's one connection reads
    # them once (858 reads before, 6 after).
    reads = syscalls(tmp_path, "threads", N, ("pread64",))
    assert reads <= 20, f"{reads} page reads over {2 * N} turns"  # the first turn reads its pages (6 here)


@pytest.mark.parametrize("mode", ["enqueue", "dequeue"])
def test_huey_flushes_neither_an_enqueue_nor_a_take(tmp_path, mode):
    # the job row's flushed commit records each send; a message a power cut loses is sent again by the
    # dispatch sweep (test_dispatch.py), so the queue file is never flushed by itself
    assert flushes(tmp_path, mode, N) <= 2  # a new WAL's first frame and its directory entry are flushed
