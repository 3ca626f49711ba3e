"""Token counts of prompt text, counted (not guessed from characters) with the bundled WordPiece tokenizer.

It is the MiniLM tokenizer the router already ships (alter0/routing/tokenizer.json): not the agent's own
tokenizer, but a real count that tracks it closely for English and code, and the same on every host.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

TOKENIZER_PATH = Path(__file__).parent / "routing" / "tokenizer.json"
#: Name recorded next to every count (the job's "prompt" event).
COUNTER = "minilm-wordpiece"
_lock = threading.Lock()
_tokenizer = None


def _load():
    global _tokenizer
    if _tokenizer is not None:
        return _tokenizer
    with _lock:
        if _tokenizer is None:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(TOKENIZER_PATH))
            tok.no_padding()
            tok.no_truncation()
            _tokenizer = tok
        return _tokenizer


def count(text: str) -> int:
    """Tokens in ``text`` (special tokens not counted). A task's memory turns are counted again for every prompt:
    counts of texts up to CACHED_CHARS long are remembered (at most CACHED texts)."""
    if not text:
        return 0
    if len(text) <= CACHED_CHARS:
        return _count_cached(text)
    return _count(text)


def _count(text: str) -> int:
    return len(_load().encode(text, add_special_tokens=False).ids)


CACHED_CHARS = 4000
CACHED = 2048
_count_cached = functools.lru_cache(maxsize=CACHED)(_count)
