"""The request-path scorer: concurrent requests are embedded together, and batching changes no score."""

from __future__ import annotations

import asyncio

import pytest

from router.classify.scorer import EscalationScorer

TEXTS = [f"Question {i}: prove that {i} squared plus {i} is even." for i in range(12)]


@pytest.fixture(scope="module")
def scorer() -> EscalationScorer:
    s = EscalationScorer()
    s.load()
    return s


async def test_concurrent_requests_are_batched_and_scored_as_if_alone(scorer: EscalationScorer) -> None:
    alone = [scorer.score_now(text) for text in TEXTS]
    batches: list[int] = []
    real = scorer.score_batch

    def counting(texts: list[str]) -> list[float]:
        batches.append(len(texts))
        return real(texts)

    scorer.score_batch = counting  # type: ignore[method-assign]
    scorer._loaded.set()
    together = await asyncio.gather(*(scorer.score(text) for text in TEXTS))
    assert together == pytest.approx(alone, abs=1e-5)
    assert sum(batches) == len(TEXTS)
    assert len(batches) < len(TEXTS)  # the ones that queued behind the first went in one batch
    await scorer.close()
