"""The lexical router: the embedded router's signals minus the embedding; no ML dependency at all."""

from __future__ import annotations

from .base import RouteDecision, RouteInput, Router
from .scorer import Weights, decide


class LexicalRouter(Router):
    """Speakers, addressees, recency, word and character n-gram overlap, combined by fitted weights."""

    name = "lexical"
    local = True

    def __init__(self, degraded_reason: str = ""):
        self.weights = Weights.load("lexical")
        self.version = self.weights.tag
        self.degraded_reason = degraded_reason

    def route(self, inp: RouteInput) -> RouteDecision:
        return decide(inp, self.weights, None)
