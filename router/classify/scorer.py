"""The escalation score of one request, for `route: auto`: embedding + head, off the event loop.

Loaded only when the policy routes something `auto` (the embedder costs seconds to import and a few
hundred MB), in the background at start-up; `/readyz` waits for it. Embedding runs on one dedicated
thread (torch already uses the cores for one encode). Requests that arrive while an embedding runs are
embedded together in the next batch: a lone request waits for nothing, and under load one batched encode
(~2.5 ms a prompt here) replaces many single ones (~25-50 ms each).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from router.classify.head import SHIPPED_HEAD, Head

if TYPE_CHECKING:
    from router.classify.embedder import Embedder

log = logging.getLogger(__name__)


class EscalationScorer:
    def __init__(self, head_path: Path = SHIPPED_HEAD, embedder_model: str | None = None) -> None:
        self._head_path = head_path
        self._embedder_model = embedder_model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._embedder: Embedder | None = None
        self._head: Head | None = None
        self._loaded = asyncio.Event()
        self.error: str | None = None
        self._pending: asyncio.Queue[tuple[str, asyncio.Future[float]]] = asyncio.Queue()
        self._batcher: asyncio.Task[None] | None = None
        self.max_batch = 64

    def load(self) -> None:
        """Blocking load (the CLI uses it directly; the gateway calls `start`)."""
        from router.classify.embedder import Embedder

        self._head = Head.load(self._head_path)
        self._embedder = Embedder(self._embedder_model)

    async def start(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.load)
        except Exception as exc:  # e.g. the `classifier` extra is not installed
            self.error = f"the classifier could not load: {exc}"
            log.error("%s; `auto` routes go to the local model (reason classifier-unavailable)", self.error)
        finally:
            self._loaded.set()

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._head is not None and self._embedder is not None

    def score_now(self, text: str) -> float:
        return self.score_batch([text])[0]

    def score_batch(self, texts: list[str]) -> list[float]:
        assert self._head is not None and self._embedder is not None
        vectors = self._embedder.embed(texts)
        return [float(x) for x in np.clip(self._head.score(vectors, texts), 0.0, 1.0)]

    async def score(self, text: str) -> float | None:
        """The escalation score, or None when the classifier could not load."""
        await self._loaded.wait()
        if not self.ready:
            return None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((text, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches(), name="classifier-batches")
        return await future

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty() and len(batch) < self.max_batch:
                batch.append(self._pending.get_nowait())
            batch = [(text, future) for text, future in batch if not future.done()]  # callers that gave up
            if not batch:
                continue
            try:
                scores = await loop.run_in_executor(self._executor, self.score_batch, [text for text, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), score in zip(batch, scores, strict=True):
                if not future.done():
                    future.set_result(score)
