"""Repeatable decisions: the same input gives the same embeddings, decisions and scores whatever Python's hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.helpers import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "regression" / "chat_sample.jsonl"
CONTEXT = ROOT / "tests" / "regression" / "chat_sample.context.jsonl"

# Same-length texts, many of them: before the fix their batch order (and the int8 per-batch scales) followed
# the set's hash order.
EMBED_SCRIPT = r"""
import hashlib, json, sys
from alter0.routing.sentence_encoder import shared_embedder
texts = [f"task {i:03d} fails on line {(i * 37) % 1000:03d}" for i in range(64)]
texts += [w * 3 for w in ("abc", "xyz", "foo", "bar", "baz", "qux", "lol", "wat")]
e = shared_embedder()
e.embed_many(texts, batch=16)
print(json.dumps({t: hashlib.sha256(e.embed(t).tobytes()).hexdigest() for t in texts}))
"""


def _env(seed: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
    return env


def _model_or_skip():
    from alter0.routing.sentence_encoder import ModelUnavailable, shared_embedder
    try:
        shared_embedder()
    except ModelUnavailable as exc:
        skip_or_fail(f"embedding model unavailable: {exc}")


def test_embed_many_is_independent_of_the_hash_seed():
    _model_or_skip()
    runs = [subprocess.run([sys.executable, "-c", EMBED_SCRIPT], env=_env(seed), cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout for seed in ("1", "2", "3")]
    vecs = [json.loads(r) for r in runs]
    assert vecs[0] == vecs[1] == vecs[2]
def _bench(tmp: Path, seed: str, stream: Path, context: Path | None, engine: str) -> list[dict]:
    out = tmp / f"preds-{seed}.jsonl"
    cmd = [str(Path(sys.executable).parent / "alter0"), "bench", "routing", "--input", str(stream),
           "--output", str(out), "--backend", "embedded", "--engine", engine, "--jobs", "1"]
    if context:
        cmd += ["--context", str(context)]
    subprocess.run(cmd, env=_env(seed), cwd=tmp, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("engine", ["inline", "kernel"])
def test_bench_routing_twice_with_different_hash_seeds_decides_the_same(tmp_path, engine):
    _model_or_skip()
    # Given the sample rooms plus the product set rendered as a chat stream (many same-length messages)
    from alter0.tools.product_set import as_stream
    stream = tmp_path / "stream.jsonl"
    recs = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()] + as_stream()
    stream.write_text("".join(json.dumps(r) + "\n" for r in recs))
    # When `alter0 bench routing` runs twice under different PYTHONHASHSEED values
    a = _bench(tmp_path, "11", stream, CONTEXT, engine)
    b = _bench(tmp_path, "4242", stream, CONTEXT, engine)
    # Then every message lands in the same task
    assert len(a) == len(b) > 100
    assert a == b


def test_product_replay_decisions_and_scores_repeat_across_hash_seeds():
    _model_or_skip()
    script = ("import json; from alter0.tools.product_set import decisions_fingerprint; "
              "print(json.dumps(decisions_fingerprint()))")
    runs = [subprocess.run([sys.executable, "-c", script], env=_env(seed), cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout for seed in ("5", "77")]
    assert runs[0] == runs[1] and len(json.loads(runs[0])) >= 150
