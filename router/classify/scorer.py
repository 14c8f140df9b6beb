"""The escalation score of one request, for `route: auto`: embedding + head, off the event loop.

Loaded only when the policy routes something `auto` (the embedder costs seconds to import and a few
hundred MB), in the background at start-up; `/readyz` waits for it. Embedding runs on one dedicated
thread: torch already uses the cores for one encode, and a queue keeps requests in order.
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
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._head is not None and self._embedder is not None

    def score_now(self, text: str) -> float:
        assert self._head is not None and self._embedder is not None
        vectors = self._embedder.embed([text])
        return float(np.clip(self._head.score(vectors, [text])[0], 0.0, 1.0))

    async def score(self, text: str) -> float | None:
        """The escalation score, or None when the classifier could not load."""
        await self._loaded.wait()
        if not self.ready:
            return None
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.score_now, text)
