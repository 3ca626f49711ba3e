"""Build the configured router and closer; a backend that cannot load degrades, it never raises."""

from __future__ import annotations

import logging
from typing import Callable

from .base import Closer, Router
from .sentence_encoder import ModelUnavailable, shared_embedder

logger = logging.getLogger(__name__)

RunExecutor = Callable[[str, float], str]


def _embedder(cfg):
    return shared_embedder(cfg.get("router.model_path") or None, cfg.get("router.onnx_threads", 1),
                           cfg.get("router.onnx_int8", True))


def warm(cfg) -> str:
    """Load the embedding model now (once per process); return '' or why it cannot load."""
    try:
        _embedder(cfg).embed("warm up")
        return ""
    except ModelUnavailable as exc:
        return str(exc)


def embedded_router(cfg) -> Router:
    """The embedded router, or the lexical one (with ``degraded_reason``) when the model cannot load."""
    from .lexical import LexicalRouter
    try:
        from .embedded_router import EmbeddedRouter
        return EmbeddedRouter(_embedder(cfg))
    except ModelUnavailable as exc:
        logger.warning("router: embedded backend unavailable (%s); using lexical", exc)
        return LexicalRouter(degraded_reason=f"embedding model unavailable: {exc}")


def build_router(cfg, run_executor: RunExecutor | None = None) -> Router:
    """The router named by ``router.backend`` (embedded | lexical | llm)."""
    backend = cfg["router.backend"]
    if backend == "lexical":
        from .lexical import LexicalRouter
        return LexicalRouter()
    fallback = embedded_router(cfg)
    if backend == "llm":
        from .llm_backend import LLMRouter
        if run_executor is None:
            fallback.degraded_reason = "llm router has no executor; using " + fallback.name
            return fallback
        return LLMRouter(run_executor, fallback, timeout=cfg["task.routing_timeout_sec"])
    return fallback


def embedded_closer(cfg) -> Closer:
    """The embedded closer, or its rules-only form (with ``degraded_reason``) when the model cannot load."""
    from .closer import EmbeddedCloser
    try:
        return EmbeddedCloser(_embedder(cfg))
    except ModelUnavailable as exc:
        logger.warning("closer: embedding model unavailable (%s); using rules only", exc)
        return EmbeddedCloser(None, degraded_reason=f"embedding model unavailable: {exc}")


def build_closer(cfg, run_executor: RunExecutor | None = None) -> Closer:
    """The closer named by ``closer.backend`` (embedded | llm)."""
    fallback = embedded_closer(cfg)
    if cfg["closer.backend"] == "llm":
        from .llm_backend import LLMCloser
        if run_executor is None:
            fallback.degraded_reason = "llm closer has no executor; using " + fallback.name
            return fallback
        return LLMCloser(run_executor, fallback, timeout=cfg["task.close_timeout_sec"])
    return fallback
