"""The 2-minute soak with SIGKILLs of worker and web: nothing lost, nothing duplicated, nothing stuck."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.helpers import ROOT


@pytest.mark.timeout(900)
def test_two_minute_soak_with_kills_passes(tmp_path):
    report = tmp_path / "soak-report.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--duration", "120", "--rate", "2",
         "--kill-min", "8", "--kill-max", "20", "--seed", "7", "--out", str(tmp_path / "install"),
         "--report", str(report)],
        capture_output=True, text=True, timeout=840)
    text = report.read_text() if report.exists() else ""
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in (tmp_path / "install").glob("*.log"))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    assert "# alter0 soak report: PASS" in text
    for line in ("| lost | 0 |", "| duplicates | 0 |", "| stuck (non-terminal) | 0 |"):
        assert line in text
    kills = int(text.split("| kills (SIGKILL) | ")[1].split(":")[0])
    assert kills >= 3
