"""The escalation score of one request, for `route: auto`: the shared embedding, then the trained head.

Loaded only when the policy routes something `auto`; the head is a small numpy file, the embedding comes
from the `EmbeddingService` the semantic cache shares, so a request is embedded once whatever needs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from router.classify.embedding_service import EmbeddingService
from router.classify.head import SHIPPED_HEAD, STRONG_CHANCE_HEAD, Head, strong_chances


class EscalationScorer:
    def __init__(
        self, embeddings: EmbeddingService, head_path: Path = SHIPPED_HEAD, strong_path: Path = STRONG_CHANCE_HEAD
    ) -> None:
        self.embeddings = embeddings
        self.head_path = head_path
        self._head = Head.load(head_path)
        # The strong model's chance: an expected-gain head carries its own; otherwise the shipped one.
        self._strong = (
            None if self._head.kind == "expected-gain" or not strong_path.exists() else Head.load(strong_path)
        )
        self.strong_path = strong_path if self._strong is not None else None

    def describe(self) -> dict[str, object]:
        """What `/readyz` and `router route --explain` say about the classifier in use."""
        meta = self._head.meta
        return {
            "ready": self.ready,
            "head": self.head_path.name,
            "family": meta.get("chosen", self._head.kind),
            "trained_on": meta.get("trained_on", "Mixtral-8x7B vs GPT-4 outcomes on MMLU"),
            "strong_chance": self.strong_path.name if self.strong_path is not None else self.head_path.name,
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
        """`escalation` (0..1) and `strong_chance` (P(strong model right), from an expected-gain head's strong
        half or the shipped strong-chance head, which the cascade's `expected_gain` weighs against the local
        answer's probability); None when the embedder could not load."""
        if vector is None:
            vector = await self.embeddings.embed(text)
        if vector is None:
            return None
        scores = {"escalation": self.score_vectors(vector[None, :], [text])[0]}
        strong = strong_chances(self._head, self._strong, vector[None, :], [text])
        if strong is not None:
            scores["strong_chance"] = float(strong[0])
        return scores
