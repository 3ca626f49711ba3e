"""What reaches the disk: durable commits are flushed one by one, the relaxed ones (a stage's claim, heartbeats,
Huey's messages in and out of its queue file) are not. Counted with strace on a real process writing real files."""

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
cfg = load_config(sys.argv[1], env={})
ensure_dirs(cfg.output_dir)
open_current(cfg)
mode, n = sys.argv[2], int(sys.argv[3])
if mode in ("durable", "relaxed"):
    print("START", flush=True)
    for i in range(n):
        with write_tx(durable=mode == "durable"):
            jobstate.create(content="x", user_id="u", scope="user:u")
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
    strace = shutil.which("strace")
    if strace is None:
        skip_or_fail("strace is not installed (apt-get install strace)")
    cfg = write_config(tmp_path / mode)
    script = tmp_path / "commits.py"
    script.write_text(SCRIPT)
    out = subprocess.run([strace, "-f", "-qq", "-e", "trace=fsync,fdatasync,write", "-e", "signal=none",
                          sys.executable, str(script), str(cfg), mode, str(n)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "START" in line)
    stop = next(i for i, line in enumerate(lines) if "STOP" in line)
    return sum(1 for line in lines[start:stop] if "fsync(" in line or "fdatasync(" in line)


def test_durable_commits_are_flushed_one_by_one_and_relaxed_ones_not(tmp_path):
    assert flushes(tmp_path, "durable", N) >= N
    assert flushes(tmp_path, "relaxed", N) <= 2  # a new WAL's first frame and its directory entry are flushed


@pytest.mark.parametrize("mode", ["enqueue", "dequeue"])
def test_huey_flushes_neither_an_enqueue_nor_a_take(tmp_path, mode):
    # the job row's flushed commit records each send; a message a power cut loses is sent again by the
    # dispatch sweep (test_dispatch.py), so the queue file is never flushed by itself
    assert flushes(tmp_path, mode, N) <= 2  # a new WAL's first frame and its directory entry are flushed
