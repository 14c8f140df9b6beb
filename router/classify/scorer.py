"""The escalation score of one request, for `route: auto`: the shared embedding, then the trained head.

Loaded only when the policy routes something `auto`; the head is a small numpy file, the embedding comes
from the `EmbeddingService` the semantic cache shares, so a request is embedded once whatever needs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from router.classify.embedding_service import EmbeddingService
from router.classify.head import SHIPPED_HEAD, Head


class EscalationScorer:
    def __init__(self, embeddings: EmbeddingService, head_path: Path = SHIPPED_HEAD) -> None:
        self.embeddings = embeddings
        self.head_path = head_path
        self._head = Head.load(head_path)

    def describe(self) -> dict[str, object]:
        """What `/readyz` and `router route --explain` say about the classifier in use."""
        meta = self._head.meta
        return {
            "ready": self.ready,
            "head": self.head_path.name,
            "family": meta.get("chosen", self._head.kind),
            "trained_on": meta.get("trained_on", "Mixtral-8x7B vs GPT-4 outcomes on MMLU"),
            "error": self.error,
        }

    @property
    def ready(self) -> bool:
        return self.embeddings.ready

    @property
    def error(self) -> str | None:
        return self.embeddings.error

    def score_vectors(self, vectors: np.ndarray, texts: list[str]) -> list[float]:
        return [float(x) for x in np.clip(self._head.score(vectors, texts), 0.0, 1.0)]

    async def score(self, text: str, vector: np.ndarray | None = None) -> float | None:
        """The escalation score, or None when the embedder could not load."""
        scores = await self.scores(text, vector)
        return None if scores is None else scores["escalation"]

    async def scores(self, text: str, vector: np.ndarray | None = None) -> dict[str, float] | None:
        """`escalation` (0..1) and, from an expected-gain head, `strong_chance` (P(strong model right), which
        the cascade's `expected_gain` weighs against the local answer's probability); None when the
        embedder could not load."""
        if vector is None:
            vector = await self.embeddings.embed(text)
        if vector is None:
            return None
        scores = {"escalation": self.score_vectors(vector[None, :], [text])[0]}
        if self._head.kind == "expected-gain":
            strong, _ = self._head.chances(vector[None, :], [text])
            scores["strong_chance"] = float(strong[0])
        return scores
