"""The embedded router (default): MiniLM sentence similarity plus the lexical router's cheap signals."""

from __future__ import annotations

from .base import RouteDecision, RouteInput, Router
from .sentence_encoder import Embedder
from .scorer import Weights, decide


class EmbeddedRouter(Router):
    """Speakers, addressees, recency, word/n-gram overlap and embedding similarity, combined by fitted weights."""

    name = "embedded"
    local = True
    degraded_reason = ""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.weights = Weights.load("embedded")
        self.version = self.weights.tag

    def route(self, inp: RouteInput) -> RouteDecision:
        return decide(inp, self.weights, self.embedder.embed)

