"""bench/pipeline stays runnable: a tiny run (20 items, a 1 s paced phase) must print and write its table.

Never a timing assertion: the numbers depend on the machine; only the report's shape is checked.
"""

from __future__ import annotations

import re
import subprocess
import sys

from support.helpers import ROOT

ROWS = ("throughput, 20 items", "latency p50 at", "latency p99", "router decision, 8 candidate tasks",
        "routing a new message while 8 long", "ready: web", "ready: worker, fresh output dir",
        "ready: worker restart", "`POST /api/jobs` under gunicorn", "floor: 7 durable commits",
        "fsync + fdatasync calls per item", "worker RSS after warm-up")


def test_pipeline_bench_prints_and_writes_its_table(tmp_path):
    out = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline"), "--n", "20", "--paced-sec", "1", "--router-n", "5",
         "--probes", "2", "--long-sec", "2", "--post-sec", "1", "--rss-n", "20", "--fsync-n", "5",
         "--floor-n", "5", "--label", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    table = out.read_text()
    assert table.strip() == result.stdout.strip()
    assert table.startswith("# bench/pipeline — smoke, ")
    assert "| measure | raw Huey chain | alter0 | alter0 / raw | target | |" in table
    for row in ROWS:
        assert f"| {row}" in table, row
    assert not re.search(r"\bnan\b", table.lower())
