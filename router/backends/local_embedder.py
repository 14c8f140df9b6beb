"""The gateway's own embedder as a backend of `/v1/embeddings`, so that its calls go through the executor
(timeouts, breaker, metrics) like any model's. It is the embedder the classifier, the intents and the
semantic cache already run: one model in memory, loaded on first use if nothing else loaded it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from router.backends.confidence import EarlyCheck
from router.classify.embedding_service import EmbeddingService
from router.errors import InvalidRequest, UpstreamUnavailable
from router.types import Completion, RequestContext, StreamDelta

DIMENSIONS = 384


class LocalEmbedder:
    tier = "local"
    measures_confidence = False

    def __init__(self, name: str, service: EmbeddingService, count_tokens: Callable[[str], int]) -> None:
        self.name = name
        self._service = service
        self._count_tokens = count_tokens

    async def start(self) -> None:
        await self._service.start()

    async def close(self) -> None:  # the service belongs to the pipeline, which closes it
        return None

    @property
    def ready(self) -> bool:
        return self._service.ready

    def unavailable_reason(self) -> str | None:
        return self._service.error

    def stats(self) -> dict[str, Any]:
        return {"engine": "onnx-embedder", "ready": self.ready}

    async def embed(self, texts: list[str], extra: dict[str, Any]) -> tuple[list[Any], int]:
        """Unit-length vectors of 384 dimensions, and the texts' token count."""
        if extra.get("dimensions") not in (None, DIMENSIONS):
            raise InvalidRequest(
                f"The local embedder has {DIMENSIONS} dimensions and cannot shorten them.", param="dimensions"
            )
        await self._service.start()
        if not self._service.ready:
            raise UpstreamUnavailable(f"The local embedder is not available: {self._service.error}")
        vectors = await asyncio.gather(*(self._service.embed(text) for text in texts))
        return list(vectors), sum(self._count_tokens(text) for text in texts)

    async def complete(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> Completion:
        raise InvalidRequest(f"`{self.name}` is an embedding model: it cannot write answers.", param="model")

    async def stream(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> AsyncIterator[StreamDelta]:
        raise InvalidRequest(f"`{self.name}` is an embedding model: it cannot write answers.", param="model")
        yield StreamDelta()  # pragma: no cover - makes this an async generator
