"""Processes that open one new database at the same moment (a worker, the web's gunicorn workers, `alter0
status` polled by a script while the first worker starts): each one gets the database, none "database is
locked". Turning a new file into a WAL database writes its header, an upgrade of a read lock to a write lock
for which SQLite does not wait: the second opener failed at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.helpers import ROOT

PROCESSES, ROUNDS = 6, 12
OPENER = """
import glob, json, os, sys, time
from alter0.config import load_config
from alter0.migrations import open_current
base, me, processes, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for r in range(rounds):
    open(f"{base}/ready-{r}-{me}", "w").close()
    while len(glob.glob(f"{base}/ready-{r}-*")) < processes:  # all start together
        time.sleep(0.0002)
    try:
        open_current(load_config(f"{base}/config-{r}.json")).close()
        print("ok", flush=True)
    except Exception as exc:
        print(f"round {r}: {exc!r}", flush=True)
"""


def test_processes_opening_a_new_database_at_once_all_get_it(tmp_path):
    # Given ROUNDS configs, each naming a database file that does not exist yet
    for r in range(ROUNDS):
        (tmp_path / f"config-{r}.json").write_text(json.dumps({"runtime": {"output_dir": str(tmp_path / f"out-{r}")}}))
    # When PROCESSES processes open each of them at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), str(i), str(PROCESSES), str(ROUNDS)],
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    outputs = [p.communicate(timeout=120)[0].split("\n") for p in procs]
    # Then every open succeeded
    failures = [line for out in outputs for line in out if line and line != "ok"]
    assert not failures, failures
    assert sum(out.count("ok") for out in outputs) == PROCESSES * ROUNDS
