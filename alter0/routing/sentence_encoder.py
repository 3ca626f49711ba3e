"""all-MiniLM-L6-v2 (int8 ONNX) sentence embeddings: loaded once per process, no torch, nothing downloaded."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .int8_graph import int8_model_bytes
from .model_files import ModelUnavailable, default_model_path, verified_model_path  # noqa: F401  re-exported

logger = logging.getLogger(__name__)

TOKENIZER_PATH = Path(__file__).with_name("tokenizer.json")
MAX_TOKENS = 128  # tokens embedded per text; the rest of a long message is ignored
DIM = 384
#: Vectors a worker keeps (about 1.6 KB each: 6.5 MB). Decisions read the open tasks' recent turns, a few dozen
#: texts each; a bigger cache only made a long-running worker's memory grow with every message it ever saw.
CACHE_ENTRIES = 4096


class Embedder:
    """Text → L2-normalised 384-d vector (mean pooling over the attention mask), with an LRU cache."""

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 1, cache_size: int = CACHE_ENTRIES,
                 int8: bool = True):
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(f"{exc.name} is not installed") from None
        path = verified_model_path(model_path)
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: the worker shares its cores with the agents it runs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        rewritten = int8_model_bytes(path) if int8 else None
        try:
            self.session = ort.InferenceSession(rewritten or str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if rewritten is None:
                raise ModelUnavailable(f"onnxruntime cannot load {path}: {exc}") from None
            logger.warning("int8 arithmetic unavailable (%s); the model runs in float32", exc)
            rewritten = None
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        #: "int8" when the products run as DynamicQuantizeMatMul (see int8_graph), else "float32".
        self.arithmetic = "int8" if rewritten else "float32"
        self.path = path
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _run(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
        summed = (hidden * mask[:, :, None]).sum(1)
        vecs = summed / np.maximum(mask.sum(1, keepdims=True), 1)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def _put(self, text: str, vec: np.ndarray) -> None:
        with self._lock:
            self._cache[text] = vec
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def reserve(self, entries: int) -> None:
        """Keep at least ``entries`` vectors (a benchmark that embeds a whole data set first, then decides)."""
        with self._lock:
            self._cache_size = max(self._cache_size, entries)

    def embed(self, text: str) -> np.ndarray:
        """The unit vector of ``text`` (cached)."""
        vec = self._cache.get(text)
        if vec is None:
            vec = self._run([self.tokenizer.encode(text or " ")])[0].astype(np.float32)
            self._put(text, vec)
        return vec

    def embed_many(self, texts: list[str], batch: int = 16) -> None:
        """Fill the cache for many texts at once (batches of similar length, little padding).

        The order is total (length, then the text itself), so the batches, and with them the int8 products'
        per-batch quantisation scales, are the same on every run whatever Python's hash seed.
        """
        todo = sorted({t for t in texts if t not in self._cache}, key=lambda t: (len(t), t))
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            vecs = self._run(self.tokenizer.encode_batch([t or " " for t in chunk]))
            for t, v in zip(chunk, vecs):
                self._put(t, v.astype(np.float32))


_shared: dict[tuple, Embedder | ModelUnavailable] = {}
_shared_lock = threading.Lock()


def shared_embedder(model_path: str | None = None, threads: int = 1, int8: bool = True) -> Embedder:
    """The process-wide Embedder for this model path (loaded on first call; a failure is remembered)."""
    key = (str(model_path or ""), threads, int8)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is None:
            try:
                hit = Embedder(model_path, threads, int8=int8)
                logger.info("embedding model loaded from %s (%s arithmetic)", hit.path, hit.arithmetic)
            except ModelUnavailable as exc:
                hit = exc
            _shared[key] = hit
    if isinstance(hit, ModelUnavailable):
        raise hit
    return hit
