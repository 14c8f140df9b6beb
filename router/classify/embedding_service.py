"""The request path's embeddings: one model, loaded once in the background, batched under load.

One vector per request serves both the classifier (`route: auto`) and the semantic cache. Encoding runs
on one dedicated thread (torch already uses the cores for one encode), never on the event loop.
Requests that arrive while an encode runs are embedded together in the next batch: a lone request waits
for nothing, and under load one batched encode (~2.5 ms a prompt here) replaces many single ones
(~25-50 ms each).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from router.config import EmbedderConfig, Settings

log = logging.getLogger(__name__)
MAX_TEXT_CHARS = 4000
"""Longer texts are cut: the default model reads 256 word pieces at most, far fewer than this."""


class TextEmbedder(Protocol):
    dimensions: int

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


def load_embedder(config: EmbedderConfig, cache_dir: Path) -> TextEmbedder:
    """The ONNX embedder for a model folder when onnxruntime is installed, else sentence-transformers."""
    from router.classify.embedder import Embedder, default_model_path

    model_dir = Path(config.model) if config.model else default_model_path()
    if config.engine == "onnx" and (model_dir / "tokenizer.json").is_file():
        try:
            from router.classify.onnx_embedder import OnnxEmbedder

            return OnnxEmbedder(model_dir, cache_dir, config.threads)
        except ImportError as exc:
            log.warning("embedder: onnxruntime is not installed (%s); using sentence-transformers on torch", exc)
    return Embedder(config.model or model_dir, config.threads)


class EmbeddingService:
    def __init__(
        self, config: EmbedderConfig | None = None, cache_dir: Path | None = None, max_batch: int = 64
    ) -> None:
        self._config = config or EmbedderConfig()
        self._cache_dir = cache_dir or Settings().model_dir.parent / "embedders"  # where the ONNX export is kept
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._embedder: TextEmbedder | None = None
        self._starting: asyncio.Future[None] | None = None
        self.error: str | None = None
        self._pending: asyncio.Queue[tuple[str, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._batcher: asyncio.Task[None] | None = None

    def _load(self) -> None:
        if self._embedder is None:
            self._embedder = load_embedder(self._config, self._cache_dir)

    async def start(self) -> None:
        """Load the model on the embedder's thread, once; later calls wait for that one load. Whoever needs
        the embedder first starts it (the app's lifespan, a request, a reloaded policy's intents, the CLI)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        except Exception as exc:  # e.g. the `classifier` extra is not installed
            self.error = f"the embedder could not load: {exc}"
            log.error("%s; `auto` routes go to the local model and the semantic cache is off", self.error)

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._embedder is not None

    @property
    def settled(self) -> bool:
        """Loaded, or failed for good: either way nothing is still starting."""
        return self.ready or self.error is not None

    @property
    def started(self) -> bool:
        """Someone asked for the model (it may still be loading)."""
        return self._starting is not None

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text; runs on the embedder's own thread only."""
        assert self._embedder is not None
        return self._embedder.embed([text[:MAX_TEXT_CHARS] for text in texts])

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text, in one encode (a policy's intent examples); raises if the
        embedder cannot load."""
        await self.start()
        if not self.ready:
            raise RuntimeError(self.error or "the embedder is not loaded")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, texts)

    async def embed(self, text: str) -> np.ndarray | None:
        """The text's embedding, or None when the embedder could not load."""
        if self._starting is None or not self._starting.done():
            await self.start()
        if not self.ready:
            return None
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((text, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches(), name="embedding-batches")
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
                vectors = await loop.run_in_executor(self._executor, self._encode, [text for text, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
