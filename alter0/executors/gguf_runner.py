"""One chat turn of a local GGUF model, run as ``python -m alter0.executors.gguf_runner`` by the ``local`` executor.

The only importer of ``ik_llama_cpp`` (the ``ik-llama-cpp-python`` wheel: llama.cpp's C library prebuilt, nothing
compiled on install). It reads one JSON request on stdin (the messages and every generation setting), formats
the chat with the model's template, and writes the reply to stdout token by token as it is generated (UTF-8
decoded incrementally, so a Chinese character split over two tokens is printed whole); the last line on
stderr is ``alter0-usage {"input_tokens": N, "output_tokens": M}``. Sampling is done here, over the logits:
a repetition penalty on the tokens already generated (not the prompt's: penalising the question's words
makes a 135M model avoid ``ls`` in an answer about ``ls``), then greedy (temperature 0) or top-k / top-p /
temperature with a seeded generator; the turn ends at the model's end-of-turn token, a stop sequence or
``max_tokens``.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import sys
from typing import Iterator

import numpy as np

#: The marker of the usage line on stderr.
USAGE_MARK = "alter0-usage "
#: Tokens decoded per prompt batch. ik_llama.cpp's CPU matrix kernels for batches of 32 tokens or more give
#: wrong logits for SmolLM2's Q4_1 weights on CPUs without AVX-VNNI (a 40-token prompt produced an empty or an
#: unrelated reply); smaller batches take the per-row path, which matches llama.cpp.
PREFILL_BATCH = 16

#: Chat templates by name: (a message's opening, its closing, the assistant's turn opening). ChatML is SmolLM2's
#: (its GGUF's tokenizer.chat_template) and Qwen's.
TEMPLATES = {"chatml": ("<|im_start|>{role}\n", "<|im_end|>\n", "<|im_start|>assistant\n")}


def segments(messages: list[dict], template: str) -> list[tuple[str, bool]]:
    """The prompt as (text, is_template) pieces, ending with the assistant's turn opening. Only the template's
    pieces are tokenized with special tokens parsed: a message that holds ``<|im_start|>`` stays text and cannot
    open a turn of its own."""
    opening, closing, assistant = TEMPLATES[template]
    pieces: list[tuple[str, bool]] = []
    for m in messages:
        pieces += [(opening.format(role=m["role"]), True), (m["content"], False), (closing, True)]
    return pieces + [(assistant, True)]


def render(messages: list[dict], template: str) -> str:
    """The prompt text of ``messages`` in ``template`` (what the model reads)."""
    return "".join(text for text, _ in segments(messages, template))


def penalize(logits: np.ndarray, recent: list[int], penalty: float) -> None:
    """llama.cpp's repetition penalty, in place: the logits of ``recent`` tokens divided (positive) or
    multiplied (negative) by ``penalty``."""
    if penalty == 1.0 or not recent:
        return
    ids = np.unique(np.asarray(recent))
    values = logits[ids]
    logits[ids] = np.where(values > 0, values / penalty, values * penalty)


def pick(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    """The next token: the most likely at temperature 0, else sampled from the top-k / top-p set."""
    if temperature <= 0:
        return int(np.argmax(logits))
    k = max(1, min(top_k or len(logits), len(logits)))
    top = np.argpartition(-logits, k - 1)[:k]
    scaled = logits[top] / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = order[: int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1]
    return int(top[keep[rng.choice(len(keep), p=probs[keep] / probs[keep].sum())]])


class Model:
    """A loaded GGUF model with one context."""

    def __init__(self, path: str, n_ctx: int, threads: int):
        from ik_llama_cpp import _ctypes_api as api
        from ik_llama_cpp._internals import IkContext, IkModel, make_batch_range, make_batch_single

        self.api, self.batch_range, self.batch_single = api, make_batch_range, make_batch_single
        self.model = IkModel(path)
        self.ctx = IkContext(self.model, n_ctx=n_ctx, n_threads=threads, flash_attn=False)
        self.n_ctx, self.n_vocab = n_ctx, self.model.n_vocab

    def tokenize(self, pieces: list[tuple[str, bool]]) -> list[int]:
        """Tokens of the prompt's pieces, special tokens parsed in the template's pieces only."""
        return [t for text, special in pieces if text for t in self.model.tokenize(text, add_bos=False,
                                                                                    special=special)]

    def _decode(self, batch) -> None:
        failed = self.api.llama_decode(self.ctx.ctx, batch)
        self.api.llama_batch_free(batch)
        if failed:
            raise RuntimeError(f"llama_decode failed ({failed})")

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(128)
        n = self.api.llama_token_to_piece(self.model.model, token, buf, 128, 0, False)
        return buf.raw[:n] if n > 0 else b""

    def generate(self, tokens: list[int], req: dict) -> Iterator[tuple[int, bytes]]:
        """Prefill ``tokens``, then yield (token, its bytes) until end of turn or max_tokens."""
        self.ctx.kv_cache_clear()
        for start in range(0, len(tokens), PREFILL_BATCH):
            chunk = tokens[start:start + PREFILL_BATCH]
            self._decode(self.batch_range(chunk, pos_start=start, logits_last=start + len(chunk) == len(tokens)))
        rng = np.random.default_rng(req["seed"])
        recent: list[int] = []
        pos = len(tokens)
        for _ in range(req["max_tokens"]):
            logits = np.ctypeslib.as_array(self.ctx.get_logits(-1), shape=(self.n_vocab,)).astype(np.float32)
            penalize(logits, recent[-req["repeat_last_n"]:] if req["repeat_last_n"] else recent,
                     req["repeat_penalty"])
            token = pick(logits, req["temperature"], req["top_k"], req["top_p"], rng)
            if self.api.llama_token_is_eog(self.model.model, token):
                return
            recent.append(token)
            yield token, self.piece(token)
            self._decode(self.batch_single(token, pos))
            pos += 1


def fit(tokens: list[int], n_ctx: int, max_tokens: int) -> list[int]:
    """The prompt's tokens that fit the context with room for the reply (the oldest are dropped)."""
    room = max(1, n_ctx - max_tokens - 1)
    return tokens[-room:]


def main() -> int:
    req = json.loads(sys.stdin.read())
    model = Model(req["model_path"], req["n_ctx"], req["threads"])
    tokens = fit(model.tokenize(segments(req["messages"], req["template"])), req["n_ctx"], req["max_tokens"])
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    stops = [s for s in req.get("stop") or [] if s]
    text, shown, produced = "", 0, 0
    out = sys.stdout
    for _token, data in model.generate(tokens, req):
        produced += 1
        text += decoder.decode(data)
        hit = min((text.find(s) for s in stops if s in text), default=-1)
        if hit >= 0:
            text = text[:hit]
            break
        safe = len(text) - max((len(s) - 1 for s in stops), default=0)  # a stop sequence may be starting
        if safe > shown:
            out.write(text[shown:safe])
            out.flush()
            shown = safe
    else:
        text += decoder.decode(b"", final=True)
    out.write(text[shown:])
    out.flush()
    sys.stderr.write(USAGE_MARK + json.dumps({"input_tokens": len(tokens), "output_tokens": produced}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
