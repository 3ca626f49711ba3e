"""`alter0 bench routing`: one prediction per annotated message, and the inline engine equals the real route stage."""

from __future__ import annotations

import json
from pathlib import Path

from alter0.tools import bench_routing
from alter0.cli import main as cli_main
from support.helpers import REGRESSION, write_config

SAMPLE = REGRESSION / "chat_sample.jsonl"
CONTEXT = REGRESSION / "chat_sample.context.jsonl"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_stream_times_rise_across_midnight():
    recs = [{"channel_file": "2020-01-02_x", "time": t} for t in ("23:58", None, "23:59", "00:01")]
    times = bench_routing.stream_times(recs)
    assert all(b > a for a, b in zip(times, times[1:]))
    assert 170 < times[3] - times[0] < 190


def threads(preds: list[dict]) -> list[tuple[str, int]]:
    """Each prediction's task as (room, n-th task of the room): equal for equal decisions, whatever the ids."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for p in preds:
        key = (p["channel_file"], p["pred_thread"])
        seen.setdefault(key, sum(1 for room, _ in seen if room == p["channel_file"]))
        out.append((p["channel_file"], seen[key]))
    return out


def test_kernel_and_inline_engines_agree(tmp_path):
    # Given the sample rooms (with context) replayed through the real route stage (one process, and the rooms
    # spread over two processes with a database each) and through the inline state
    stats, config = {}, str(write_config(tmp_path))
    for name, engine, jobs in (("kernel", "kernel", 1), ("kernel2", "kernel", 2), ("inline", "inline", None)):
        stats[name] = bench_routing.run(str(SAMPLE), str(CONTEXT), str(tmp_path / f"{name}.jsonl"),
                                        backend="lexical", engine=engine, progress=False, jobs=jobs, config=config)
    kernel, kernel2, inline = (read(tmp_path / f"{n}.jsonl") for n in ("kernel", "kernel2", "inline"))
    # Then all three put every message in the same task, and every annotated message has one line
    assert [p["pred_thread"] for p in kernel] == [p["pred_thread"] for p in inline]
    assert threads(kernel2) == threads(kernel)
    assert [(p["channel_file"], p["idx"]) for p in kernel2] == [(p["channel_file"], p["idx"]) for p in kernel]
    scored = [p for p in kernel if not p.get("context")]
    assert [(p["channel_file"], p["idx"]) for p in scored] == [(r["channel_file"], r["idx"]) for r in read(SAMPLE)]
    assert stats["kernel"]["scored"] == 22 and stats["kernel"]["backend"] == "lexical"


def test_rooms_are_independent_and_threads_found(tmp_path):
    bench_routing.run(str(SAMPLE), None, str(tmp_path / "p.jsonl"), backend="embedded", engine="inline",
                      progress=False, config=str(write_config(tmp_path)))
    preds = {(p["channel_file"], p["idx"]): p["pred_thread"] for p in read(tmp_path / "p.jsonl")}
    gold = read(SAMPLE)
    rooms = {}
    for r in gold:
        rooms.setdefault(preds[(r["channel_file"], r["idx"])], set()).add(r["channel_file"])
    assert all(len(v) == 1 for v in rooms.values())
    # the notice starts nothing; alice's "that fixed it" joins her apt thread
    by = {(r["channel_file"], r["idx"]): r for r in gold}
    assert preds[("2020-01-01_room-a", 102)] not in {preds[k] for k in preds if k[1] != 102}
    assert preds[("2020-01-01_room-a", 108)] == preds[("2020-01-01_room-a", 100)]
    assert by[("2020-01-01_room-a", 108)]["gold_thread"] == by[("2020-01-01_room-a", 100)]["gold_thread"]


def test_cli_subcommand(tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    code = cli_main(["--config", str(write_config(tmp_path)), "bench", "routing", "--input", str(SAMPLE),
                     "--output", str(out), "--backend", "lexical", "--engine", "inline"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["scored"] == 22 and len(read(out)) == 22


def test_cli_missing_input(tmp_path, capsys):
    code = cli_main(["--config", str(write_config(tmp_path)), "bench", "routing", "--input",
                     str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")])
    assert code != 0 and "does not exist" in capsys.readouterr().err


def test_product_set_shape():
    from alter0.tools import product_set
    data = product_set.load()
    routes, closes = product_set.route_episodes(data), product_set.close_episodes(data)
    assert len(routes) >= 150 and len(closes) >= 100
    for eps in (routes, [product_set.RouteEpisode("", c["split"], c["category"], c["lang"], 0, None) for c in closes]):
        assert {e.split for e in eps} == {"dev", "test"}
        assert {e.lang for e in eps} == {"en", "zh", "mixed"}
    for ep in routes:  # every expected task is one of the episode's open tasks
        assert ep.expect == "new" or ep.expect in {c.task_id for c in ep.inp.candidates}, ep.id


def test_bench_routing_product_set_mode(tmp_path):
    # When a user runs the product-set mode of `alter0 bench routing` (a real subprocess)
    import subprocess
    import sys
    alter0 = str(Path(sys.executable).parent / "alter0")
    out = subprocess.run([alter0, "--config", str(write_config(tmp_path)), "bench", "routing", "--product-set",
                          "--split", "dev", "--backend", "lexical"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    # Then it prints accuracy per category and language for routing and closing, and a JSON summary
    assert lines[0].startswith("product routing [dev]:") and "by language: en" in out.stdout
    assert "product closing [dev]:" in out.stdout and "done_silent" in out.stdout
    summary = json.loads(lines[-1])
    assert summary["routing_n"] == 80 and summary["closing_n"] >= 50 and 0 <= summary["routing_acc"] <= 100
    # And a missing stream or set is one clear line, no traceback
    bad = subprocess.run([alter0, "bench", "routing", "--product-set", "--product-set-path", str(tmp_path / "no.json")],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([alter0, "bench", "routing"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "--input and --output are required" in bad.stderr
