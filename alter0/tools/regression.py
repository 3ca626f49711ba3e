"""Run the hand-written regression sets (tests/regression/*.jsonl) and count passes per category."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from ..decide import accepts_close, accepts_route
from ..routing.base import Candidate, CloseInput, RouteInput, Turn, validate_close, validate_route


def load(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def route_input(case: dict) -> RouteInput:
    """The RouteInput of one router case."""
    m = case["message"]
    cands = [Candidate(c["task_id"], c["title"], [Turn(**t) for t in c["turns"]], c["participants"],
                       c["last_active_at"], c["created_at"], c.get("summary", "")) for c in case["candidates"]]
    return RouteInput(m["content"], m["user_id"], m.get("channel_id", ""), m["at"], cands)


def run_router(router, cases: list[dict], threshold: float) -> dict:
    """Route every case as the kernel would (validate, threshold); per category: passed, total, confusion, misses."""
    out: dict = defaultdict(lambda: {"passed": 0, "total": 0, "confusion": Counter(), "misses": []})
    for case in cases:
        inp = route_input(case)
        dec = validate_route(router.route(inp), {c.task_id for c in inp.candidates})
        got = dec.task_id if accepts_route(dec, threshold) else "new"
        want = case["expect"]
        cat = out[case["category"]]
        cat["total"] += 1
        kind_w = "new" if want == "new" else "existing"
        kind_g = "new" if got == "new" else ("right task" if got == want else "wrong task")
        cat["confusion"][f"{kind_w}->{kind_g}"] += 1
        if got == want:
            cat["passed"] += 1
        else:
            cat["misses"].append(f"{case['note']}: expected {want}, got {got} ({dec.reason})")
    return dict(out)


def run_closer(closer, cases: list[dict], threshold: float) -> dict:
    """Decide every closer case (close only at or above ``threshold``); per category as run_router."""
    out: dict = defaultdict(lambda: {"passed": 0, "total": 0, "confusion": Counter(), "misses": []})
    for case in cases:
        turns = [Turn(**t) for t in case.get("turns", [])]
        dec = validate_close(closer.decide(CloseInput(1, case["user_message"], case["reply"], turns, threshold)))
        got = accepts_close(dec, threshold)
        cat = out[case["category"]]
        cat["total"] += 1
        cat["confusion"][f"{'close' if case['expect_close'] else 'open'}->{'close' if got else 'open'}"] += 1
        if got == case["expect_close"]:
            cat["passed"] += 1
        else:
            cat["misses"].append(f"{case['user_message'][:60]!r}: expected close={case['expect_close']} ({dec.reason})")
    return dict(out)


def report(results: dict) -> str:
    """A small table: category, pass rate, confusion counts."""
    lines = []
    for name, r in sorted(results.items()):
        conf = ", ".join(f"{k} {v}" for k, v in sorted(r["confusion"].items()))
        lines.append(f"{name:16s} {r['passed']:3d}/{r['total']:<3d} {100 * r['passed'] / r['total']:5.1f}%  {conf}")
        lines.extend(f"    miss: {m}" for m in r["misses"])
    return "\n".join(lines)
