"""Token counts of prompt text, counted (not guessed from characters) with the bundled WordPiece tokenizer.

It is the MiniLM tokenizer the router already ships (alter0/routing/tokenizer.json): not the agent's own
tokenizer, but a real count that tracks it closely for English and code, and the same on every host.
"""

from __future__ import annotations

import threading
from pathlib import Path

TOKENIZER_PATH = Path(__file__).parent / "routing" / "tokenizer.json"
#: Name recorded next to every count (the job's "prompt" event).
COUNTER = "minilm-wordpiece"
_lock = threading.Lock()
_tokenizer = None


def _load():
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(TOKENIZER_PATH))
            tok.no_padding()
            tok.no_truncation()
            _tokenizer = tok
        return _tokenizer


def count(text: str) -> int:
    """Tokens in ``text`` (special tokens not counted)."""
    if not text:
        return 0
    return len(_load().encode(text, add_special_tokens=False).ids)
