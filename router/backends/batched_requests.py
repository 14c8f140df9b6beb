"""The in-process backend's side of the batched engine: each request becomes a future.

A request is queued on the engine (`llama_batch.py`) with callbacks that run on the engine's thread
and hand text and the end back to the event loop. Here too: how long a request may wait for a
sequence before it is handed to the fallback (503 + Retry-After), and the counts `/readyz` shows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

from router.backends.batch_sequences import Generation
from router.backends.confidence import ConfidenceMeter
from router.backends.llama_batch import BatchEngine
from router.backends.llama_sampling import Sampling
from router.backends.local_logprobs import Entry, aligned_entries
from router.errors import Overloaded, UpstreamUnavailable
from router.types import StreamDelta, Usage

Result = tuple[str | None, Usage, list[Entry] | None]
"""(finish reason, usage, the tokens' log-probabilities when asked)."""


class BatchedRequests:
    def __init__(self, engine: BatchEngine, tokenizer: Any, max_wait_s: float) -> None:
        self.engine = engine
        self._tokenizer = tokenizer
        self._max_wait_s = max_wait_s
        self.waiting = 0
        """Requests queued for a sequence."""
        self.abandoned_tokens = 0
        """Tokens generated for requests whose client went away before the end."""

    def submit(
        self,
        tokens: list[int],
        kwargs: Mapping[str, Any],
        emit: Callable[[StreamDelta], None],
        cancel: threading.Event,
        meter: ConfidenceMeter | None,
    ) -> asyncio.Future[Result]:
        """Queue one generation (`kwargs` as the backend prepares them); resolves when its sequence ends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        text: list[str] = []
        started = threading.Event()
        self.waiting += 1

        def no_longer_waiting() -> None:
            self.waiting -= 1

        def start() -> None:
            started.set()
            loop.call_soon_threadsafe(no_longer_waiting)

        def finish(reason: str, completion_tokens: int) -> None:
            if not started.is_set():
                loop.call_soon_threadsafe(no_longer_waiting)
            if reason == "cancelled":
                self.abandoned_tokens += completion_tokens
            if reason == "error":
                error = UpstreamUnavailable("the local model failed while generating (see the gateway's log)")
                loop.call_soon_threadsafe(_fail, future, error)
                return
            keep = meter is not None and meter.keeps_tokens
            entries = aligned_entries(self._tokenizer, meter, "".join(text)) if keep else None
            loop.call_soon_threadsafe(_settle, future, (reason, Usage(len(tokens), completion_tokens), entries))

        def piece(chunk: str) -> None:
            text.append(chunk)
            emit(StreamDelta(content=chunk))

        def waited_too_long() -> None:
            if not started.is_set() and not future.done():
                cancel.set()  # the engine drops it from its queue
                future.set_exception(
                    Overloaded(
                        f"The local model is busy: no sequence was free within {self._max_wait_s:g} s.",
                        headers={"Retry-After": "1"},
                    )
                )

        timer = loop.call_later(self._max_wait_s, waited_too_long)
        future.add_done_callback(lambda _: timer.cancel())
        job = Generation(tokens, kwargs["max_tokens"], sampling(kwargs), list(kwargs["stop"]), piece, finish, cancel)
        job.meter, job.start = meter, start
        self.engine.submit(job)
        return future


def sampling(kwargs: Mapping[str, Any]) -> Sampling:
    grammar = kwargs.get("grammar")
    return Sampling(
        temperature=kwargs["temperature"],
        top_p=kwargs["top_p"],
        top_k=kwargs.get("top_k", 40),
        seed=kwargs["seed"],
        presence_penalty=kwargs["presence_penalty"],
        frequency_penalty=kwargs["frequency_penalty"],
        logit_bias=kwargs.get("logit_bias") or {},
        grammar=getattr(grammar, "_grammar", None),  # llama-cpp-python keeps the GBNF text it compiled
    )


def _settle(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Result], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
