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
