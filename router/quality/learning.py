"""Learning from judged traffic: judgements as a training set for the escalation head.

A judgement holds the prompt's embedding (and its text only with `shadow.store_prompts`), the local
answer's quality and the reference's: the same shape as the shipped data's weak and strong outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from router.classify.data import Dataset
from router.classify.embedding_service import TextEmbedder
from router.quality.records import Judgement

TRAFFIC_PREFIX = "traffic:"


def traffic_dataset(judgements: Sequence[Judgement]) -> tuple[Dataset, dict[str, np.ndarray]]:
    """The judged requests with an embedding, as a Dataset (prompts stand in by id where the text was not
    kept), and each stand-in's vector. Groups are the rules that routed them: a split holds whole rules out."""
    kept = [j for j in judgements if j.embedding is not None]
    keys = [j.prompt or f"{TRAFFIC_PREFIX}{j.request_id}" for j in kept]
    vectors = {key: j.vector() for key, j in zip(keys, kept, strict=True)}
    data = Dataset(
        "traffic",
        keys,
        np.array([j.local_score for j in kept], float),
        np.array([j.reference_score for j in kept], float),
        [f"traffic/{j.rule}" for j in kept],
    )
    return data, {k: v for k, v in vectors.items() if v is not None}


class StoredEmbeddings:
    """An embedder that knows the judged prompts' stored vectors and embeds anything else with `fallback`."""

    def __init__(self, vectors: dict[str, np.ndarray], fallback: TextEmbedder | None) -> None:
        self._vectors = vectors
        self._fallback = fallback
        first = next(iter(vectors.values()), None)
        self.dimensions = len(first) if first is not None else (fallback.dimensions if fallback else 0)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            if self._fallback is None:
                raise ValueError(f"{len(missing)} text(s) have no stored embedding")
            for text, vector in zip(missing, self._fallback.embed(missing), strict=True):
                self._vectors[text] = np.asarray(vector, np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)
