"""The product-conversation set (tests/regression/product_set.json): its episodes, their replay through a router
or closer, and the scores per category, language and split (accuracy, false closes, calibration error)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..decide import accepts_close, accepts_route
from ..routing.base import Candidate, CloseInput, RouteInput, Turn, validate_close, validate_route

PATH = Path(__file__).resolve().parents[2] / "tests" / "regression" / "product_set.json"
T0 = 1_750_000_000.0
TURN_GAP = 120.0  # seconds between two messages of one task


def load(path: str | Path = PATH) -> dict:
    """The set as stored: sessions (open tasks + routing probes) and closing cases."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class RouteEpisode:
    """One routing probe: the message, its session's open tasks (most recent first), the right answer."""

    id: str
    split: str
    category: str
    lang: str
    expect: int | str  # a task id or "new"
    inp: RouteInput


def _candidates(session: dict, last: int | None) -> list[Candidate]:
    cands = []
    for t in session["tasks"]:
        ago = 0.5 if t["task_id"] == last else t["ago_min"]
        end = T0 - ago * 60
        n = len(t["turns"])
        turns = [Turn(x["role"], x["content"], x["user_id"], end - (n - 1 - i) * TURN_GAP)
                 for i, x in enumerate(t["turns"])]
        users = list(dict.fromkeys(x["user_id"] for x in t["turns"] if x["role"] == "user"))
        cands.append(Candidate(t["task_id"], t["title"], turns, users, end, turns[0].at))
    return sorted(cands, key=lambda c: (c.last_active_at, c.task_id), reverse=True)


def route_episodes(data: dict | None = None, split: str = "all") -> list[RouteEpisode]:
    """Every routing probe of ``split`` (dev | test | all), in file order."""
    data = data or load()
    out = []
    for s in data["sessions"]:
        if split not in ("all", s["split"]):
            continue
        for i, p in enumerate(s["probes"]):
            inp = RouteInput(p["content"], p.get("user_id", s["user_id"]), s["channel_id"], T0,
                             _candidates(s, p.get("last")))
            out.append(RouteEpisode(f"{s['id']}.{i}", s["split"], p["category"], p["lang"], p["expect"], inp))
    return out


def close_episodes(data: dict | None = None, split: str = "all") -> list[dict]:
    """Every closing case of ``split``."""
    data = data or load()
    return [c for c in data["closing"] if split in ("all", c["split"])]


def ece(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    """Expected calibration error (in points) of (confidence, correct) pairs over equal-width bins."""
    if not pairs:
        return 0.0
    groups: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for conf, ok in pairs:
        groups[min(bins - 1, int(conf * bins))].append((conf, ok))
    return 100 * sum(abs(sum(c for c, _ in g) / len(g) - sum(ok for _, ok in g) / len(g)) * len(g)
                     for g in groups.values()) / len(pairs)


def _tally() -> dict:
    return defaultdict(lambda: [0, 0])


def run_routing(router, threshold: float, split: str = "all", data: dict | None = None) -> dict:
    """Route every episode as the kernel would; accuracy overall, per category and language, misses, ECE."""
    by_cat, by_lang, pairs, misses, decisions = _tally(), _tally(), [], [], []
    for ep in route_episodes(data, split):
        dec = validate_route(router.route(ep.inp), {c.task_id for c in ep.inp.candidates})
        got = dec.task_id if accepts_route(dec, threshold) else "new"
        ok = got == ep.expect
        for table, key in ((by_cat, ep.category), (by_lang, ep.lang)):
            table[key][0] += ok
            table[key][1] += 1
        # confidence as the probability that the answer given is right
        conf = dec.confidence if got == (dec.task_id if dec.decision == "existing" else "new") else 1 - dec.confidence
        pairs.append((conf, ok))
        decisions.append((ep.id, dec.decision, dec.task_id, round(dec.confidence, 6)))
        if not ok:
            misses.append(f"{ep.id} [{ep.category}/{ep.lang}] {ep.inp.content[:60]!r}: expected {ep.expect}, "
                          f"got {got} ({dec.reason})")
    n = len(pairs)
    return {"split": split, "n": n, "accuracy": 100 * sum(ok for _, ok in pairs) / max(n, 1),
            "ece": ece(pairs), "by_category": dict(by_cat), "by_lang": dict(by_lang), "misses": misses,
            "decisions": decisions}


def run_closing(closer, threshold: float, split: str = "all", data: dict | None = None) -> dict:
    """Decide every closing case; accuracy, false closes (closed when it should stay open), recall, per category."""
    by_cat, by_lang, misses = _tally(), _tally(), []
    tp = fp = fn = tn = 0
    for i, c in enumerate(close_episodes(data, split)):
        dec = validate_close(closer.decide(CloseInput(1, c["user_message"], c["reply"], [], threshold)))
        got = accepts_close(dec, threshold)
        ok = got == c["expect_close"]
        tp += got and c["expect_close"]
        fp += got and not c["expect_close"]
        fn += (not got) and c["expect_close"]
        tn += (not got) and not c["expect_close"]
        for table, key in ((by_cat, c["category"]), (by_lang, c["lang"])):
            table[key][0] += ok
            table[key][1] += 1
        if not ok:
            misses.append(f"[{c['category']}/{c['lang']}] {c['user_message'][:50]!r} / {c['reply'][:50]!r}: "
                          f"expected close={c['expect_close']} ({dec.reason})")
    n = tp + fp + fn + tn
    return {"split": split, "n": n, "accuracy": 100 * (tp + tn) / max(n, 1),
            "false_closes": 100 * fp / max(n, 1), "false_close_count": fp,
            "precision": 100 * tp / max(tp + fp, 1), "recall": 100 * tp / max(tp + fn, 1),
            "by_category": dict(by_cat), "by_lang": dict(by_lang), "misses": misses}


def _cells(table: dict) -> str:
    return "  ".join(f"{k} {ok}/{n} ({100 * ok / n:.0f}%)" for k, (ok, n) in sorted(table.items()))


def report(routing: dict, closing: dict, show_misses: bool = False) -> str:
    """The product set's numbers as printed by `alter0 bench routing --product-set` and bench/routing."""
    lines = [f"product routing [{routing['split']}]: {routing['accuracy']:.1f}% of {routing['n']}, "
             f"ECE {routing['ece']:.1f}",
             "  by category: " + _cells(routing["by_category"]),
             "  by language: " + _cells(routing["by_lang"]),
             f"product closing [{closing['split']}]: {closing['accuracy']:.1f}% of {closing['n']}, false closes "
             f"{closing['false_closes']:.1f}% ({closing['false_close_count']}), precision {closing['precision']:.1f}, "
             f"recall {closing['recall']:.1f}",
             "  by category: " + _cells(closing["by_category"]),
             "  by language: " + _cells(closing["by_lang"])]
    if show_misses:
        lines += ["  miss: " + m for m in routing["misses"] + closing["misses"]]
    return "\n".join(lines)


def as_stream(data: dict | None = None) -> list[dict]:
    """The sessions as annotated chat rooms (the tasks' user messages, then the probes), for `bench routing`."""
    data = data or load()
    out = []
    for n, s in enumerate(data["sessions"]):
        room, minute, idx = f"2026-01-{n + 1:02d}_product-{s['id']}", 9 * 60, 0

        def add(speaker: str, text: str, thread: str) -> None:
            nonlocal minute, idx
            out.append({"channel_file": room, "idx": idx, "time": f"{minute // 60:02d}:{minute % 60:02d}",
                        "speaker": speaker, "text": text, "is_system": False,
                        "gold_thread": f"{room}:{thread}", "is_new_thread": False})
            minute, idx = minute + 1, idx + 1
        for t in sorted(s["tasks"], key=lambda t: -t["ago_min"]):
            for turn in t["turns"]:
                if turn["role"] == "user":
                    add(turn["user_id"], turn["content"], str(t["task_id"]))
        for i, p in enumerate(s["probes"]):
            add(p.get("user_id", s["user_id"]), p["content"], str(p["expect"] if p["expect"] != "new" else f"n{i}"))
    return out


def decisions_fingerprint(backend: str = "embedded") -> list:
    """Every routing decision (id, decision, task, confidence) of the default router: equal across runs."""
    from ..config import load_config
    from ..routing.registry import build_router
    cfg = load_config(PATH.parent / "defaults.json", env={}, overrides={"router.backend": backend})
    return run_routing(build_router(cfg), cfg["task.routing_confidence_threshold"])["decisions"]
