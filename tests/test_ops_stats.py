"""alter0 stats: counts, backlog per stage and nearest-rank p50/p95 of each phase over a window."""

from __future__ import annotations

import pytest

from alter0.models import Job
from alter0.ops.stats import format_stats, percentile, stats
from support.helpers import open_cfg

NOW = 1_750_000_000.0


@pytest.fixture(autouse=True)
def database(tmp_path):
    open_cfg(tmp_path)  # closed after the test by conftest's close_db


def job(status: str, created: float, *marks: float) -> Job:
    """A job created at ``created`` whose routing/generating/closing/finished times follow ``marks``."""
    names = ("routing_at", "generating_at", "closing_at", "finished_at")
    return Job.create(status=status, content="x", user_id="u", scope="user:u", created_at=created,
                      **dict(zip(names, marks)))


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50, 95, 100)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None


def test_stats_over_a_window():
    for i in range(20):  # done jobs: wait i/10 s, routing 0.1, generation 1+i, closing 0.2
        t = NOW - 100 - i
        job("done", t, t + i / 10, t + i / 10 + 0.1, t + i / 10 + 1.1 + i, t + i / 10 + 1.3 + i)
    job("failed", NOW - 50, NOW - 49)
    job("timed_out", NOW - 40, NOW - 39, NOW - 38)
    job("queued", NOW - 5)
    job("routing", NOW - 4, NOW - 3)
    job("generating", NOW - 3, NOW - 2.5, NOW - 2)
    job("closing", NOW - 2, NOW - 1.9, NOW - 1.8, NOW - 1)
    job("done", NOW - 90_000, NOW - 89_999)  # outside the 24 h window
    d = stats(now=NOW)
    assert d["total"] == 26 and d["done"] == 20 and d["failures"] == 1 and d["timeouts"] == 1
    assert d["backlog"] == {"route": 2, "generate": 1, "close": 1}
    gen = d["durations_sec"]["generation"]
    assert gen["count"] == 21 and gen["p50"] == 10.0 and gen["p95"] == 19.0
    assert d["durations_sec"]["closing"] == {"count": 20, "p50": 0.2, "p95": 0.2}
    assert d["durations_sec"]["queue_wait"]["p95"] == 1.8
    text = format_stats(d)
    assert "jobs in the last 24 h: 26 (done 20, failed 1, timed out 1" in text
    assert "backlog: route 2, generate 1, close 1" in text
    assert "generation" in text and "10.000" in text


def test_empty_window():
    d = stats(window_sec=60, now=NOW)
    assert d["total"] == 0 and d["durations_sec"]["total"] == {"count": 0, "p50": None, "p95": None}
    assert "-" in format_stats(d)
