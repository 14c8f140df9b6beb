"""The request path's embeddings and scores: concurrent requests are embedded together, and batching
changes no vector and no score."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router.classify.embedding_service import EmbeddingService
from router.classify.scorer import EscalationScorer

TEXTS = [f"Question {i}: prove that {i} squared plus {i} is even." for i in range(12)]


@pytest.fixture(scope="module")
async def embeddings() -> EmbeddingService:
    service = EmbeddingService()
    await service.start()
    return service


async def test_concurrent_requests_are_batched_and_embedded_as_if_alone(embeddings: EmbeddingService) -> None:
    alone = np.stack([(await embeddings.embed_many([text]))[0] for text in TEXTS])
    batches: list[int] = []
    real = embeddings._encode

    def counting(texts: list[str]) -> np.ndarray:
        batches.append(len(texts))
        return real(texts)

    embeddings._encode = counting  # type: ignore[method-assign]
    together = await asyncio.gather(*(embeddings.embed(text) for text in TEXTS))
    embeddings._encode = real  # type: ignore[method-assign]
    assert np.allclose(np.stack(together), alone, atol=1e-5)
    assert sum(batches) == len(TEXTS)
    assert len(batches) < len(TEXTS)  # the ones that queued behind the first went in one batch


async def test_a_shared_vector_scores_as_the_text_would(embeddings: EmbeddingService) -> None:
    scorer = EscalationScorer(embeddings)
    text = TEXTS[3]
    vector = (await embeddings.embed_many([text]))[0]
    alone = scorer.score_vectors(vector[None, :], [text])[0]
    assert await scorer.score(text, vector) == pytest.approx(alone, abs=1e-6)
    assert await scorer.score(text) == pytest.approx(alone, abs=1e-5)
    await embeddings.close()
