"""The in-process local backend: a GGUF model run by llama-cpp-python.

A llama context generates one request at a time, so the backend owns a small pool of contexts
(`instances`) and a dedicated thread per context; requests wait for a free context in a bounded queue
(`max_queue`) and get 503 + Retry-After when it is full. Generation runs off the event loop. A client
that goes away sets a cancel flag that llama's own per-token `stopping_criteria` hook reads, so the
context is free again after at most one more token, not after `max_tokens`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.backends.batched_requests import BatchedRequests
from router.backends.chat_templates import ChatPrompt, renderer_for
from router.backends.confidence import ConfidenceMeter, EarlyCheck
from router.backends.llama_batch import BatchEngine
from router.backends.llama_sizing import auto_sequences
from router.backends.local_logprobs import Entry, aligned_entries, formatted_logprobs, meter_for
from router.backends.local_prompt import prepared
from router.backends.local_tools import (
    answered,
    tool_names,
    with_tool_calls,
)
from router.backends.model_files import model_gguf_path, packaged_model
from router.classify.head import packaged_letter_probe_for, packaged_state_probe_for
from router.classify.prompt_state import StateProbe, load_probe, probe_summary
from router.config import LlamaCppModel
from router.errors import Overloaded, UpstreamUnavailable
from router.tokens import count_with, load_vocab
from router.types import Completion, RequestContext, StreamDelta, Usage

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

_DONE = object()
Emit = Callable[[StreamDelta], None]


class _Progress:
    """llama's stopping criterion: counts sampled tokens and stops when the request is cancelled.

    llama-cpp-python calls it once after every sampled token and once more when its loop ends, so the
    number of tokens sampled is one less than the number of calls.
    """

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self._calls = 0

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        self._calls += 1
        return self.cancel.is_set()

    @property
    def sampled(self) -> int:
        return max(0, self._calls - 1)


class LlamaCppBackend:
    def __init__(self, name: str, spec: LlamaCppModel, model_dir: Path) -> None:
        self.name = name
        self.tier = spec.tier
        self.measures_confidence = True
        self._spec = spec
        self._model_dir = model_dir
        self._executor = ThreadPoolExecutor(max_workers=spec.instances, thread_name_prefix=f"llama-{name}")
        self._pool: asyncio.Queue[Llama] | None = None
        self._loaded = asyncio.Event()
        self._load_error: BaseException | None = None
        self._render: Callable[..., ChatPrompt] | None = None
        self._tokenizer: Llama | None = None
        self._waiting = 0
        self._cancelled = 0
        self._abandoned_tokens = 0
        self._served = 0
        self._stats_lock = threading.Lock()
        self.model_path: Path | None = spec.model_path
        self._system_prompt: str | None = None
        self.state_probe: StateProbe | None = None
        """What the cascade's `prompt_gain` reads in the first step's logits (`state_probe` in the config)."""
        self.state_probe_path: Path | None = None
        self.letter_probe: StateProbe | None = None
        """What the cascade's `letter_gain` reads in the first step of a question asked aside for its letter."""
        self.letter_probe_path: Path | None = None
        self._engine: BatchEngine | None = None
        self._batched: BatchedRequests | None = None
        """With `parallel` > 1: the one context that decodes every request's sequence together."""
        self.sequences = spec.parallel if spec.parallel != "auto" else 1
        """Sequences decoded together (`parallel`, or what `auto` sized from the memory once loaded)."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:
            # Not re-raised: the server stays up and says why in /readyz and in every local answer.
            self._load_error = exc
            log.error("local model %s failed to load: %s", self.name, exc)
        finally:
            self._loaded.set()

    def _load(self) -> None:
        from llama_cpp import Llama

        spec = self._spec
        path = model_gguf_path(spec.model_path, spec.package, self._model_dir)
        self.model_path = path
        chat_format, self._system_prompt = prompt_settings(spec)
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist")
        self._load_probes(None if spec.model_path else spec.package)
        threads = self._spec.n_threads or max(1, (os.cpu_count() or 1) // self._spec.instances)
        # Tokenizing for counts and context checks must not wait for a busy generation context,
        # so a vocabulary-only instance (no weights in use, a few MB) serves it.
        self._tokenizer = load_vocab(str(path))
        self.sequences = (
            spec.parallel if spec.parallel != "auto" else auto_sequences(self._tokenizer.metadata, spec.n_ctx)
        )
        if self.sequences > 1:
            instances: list[Llama] = []
            self._engine = BatchEngine(
                path, spec.n_ctx, self.sequences, threads, spec.step_tokens, spec.exact_batching, spec.burst_prefill
            )
            self._batched = BatchedRequests(self._engine, self._tokenizer, spec.max_queue_wait_s)
        else:
            instances = [
                Llama(
                    model_path=str(path),
                    n_ctx=self._spec.n_ctx,
                    n_threads=threads,
                    n_batch=self._spec.n_batch,
                    verbose=False,
                )
                for _ in range(self._spec.instances)
            ]
        self._render = renderer_for(self._tokenizer, chat_format)
        pool: asyncio.Queue[Llama] = asyncio.Queue()
        for llama in instances:
            pool.put_nowait(llama)
        self._pool = pool
        how = f"{self.sequences} sequences batched" if self._engine else f"{len(instances)} instance(s)"
        log.info("local model %s loaded from %s (%s)", self.name, path, how)

    def _load_probes(self, package: str | None) -> None:
        shipped = packaged_state_probe_for(package)
        self.state_probe_path, self.state_probe = load_probe("state_probe", self._spec.state_probe, shipped, "served")
        shipped = packaged_letter_probe_for(package)
        self.letter_probe_path, self.letter_probe = load_probe(
            "letter_probe", self._spec.letter_probe, shipped, "aside"
        )

    def _probe_for(self, confidence: bool | EarlyCheck) -> StateProbe | None:
        """The probe that reads this generation's first step: the letter probe for a question asked aside."""
        reads = confidence.reads if isinstance(confidence, EarlyCheck) else "served"
        return self.letter_probe if reads == "letter" else self.state_probe

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            await asyncio.to_thread(self._engine.close)

    @property
    def ready(self) -> bool:
        return self._pool is not None

    def unavailable_reason(self) -> str | None:
        if self._load_error is not None:
            return f"local model failed to load: {self._load_error}"
        return None

    def stats(self) -> dict[str, Any]:
        free = self._pool.qsize() if self._pool is not None else 0
        busy = self._engine.active if self._engine is not None else self._spec.instances - free
        return {
            "engine": "llama-cpp",
            "ready": self.ready,
            "instances": self._spec.instances,
            "parallel": self.sequences,
            "busy": busy if self.ready else 0,
            "waiting": self._batched.waiting if self._batched is not None else self._waiting,
            "max_queue": self._spec.max_queue,
            "served": self._served,
            "cancelled": self._cancelled,
            "abandoned_tokens": self._abandoned_tokens + (self._batched.abandoned_tokens if self._batched else 0),
            # What the cascade's `prompt_gain` reads in the prompt: the probe's file and what it was fitted on.
            "state_probe": probe_summary(self.state_probe_path, self.state_probe),
            "letter_probe": probe_summary(self.letter_probe_path, self.letter_probe),
            **(
                {"decode_steps": self._engine.decode_steps, "prefix_tokens_reused": self._engine.prefix_tokens_reused}
                if self._engine is not None
                else {}
            ),
        }

    # -- tokens ------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int | None:
        """Exact token count with this model's vocabulary, or None before the model has loaded."""
        return None if self._tokenizer is None else count_with(self._tokenizer, text)

    def _prepare(self, ctx: RequestContext, max_tokens: int | None) -> tuple[list[int], dict[str, Any]]:
        assert self._tokenizer is not None and self._render is not None
        return prepared(ctx, max_tokens, self._spec, self._tokenizer, self._render, self._system_prompt)

    # -- generation --------------------------------------------------------------------------------

    def _generate(
        self,
        llama: Llama,
        tokens: list[int],
        kwargs: dict[str, Any],
        cancel: threading.Event,
        emit: Emit,
        meter: ConfidenceMeter | None = None,
    ) -> tuple[str | None, Usage, list[Entry] | None]:
        """Runs on a generation thread. Emits text as it comes; returns the finish reason, the usage and,
        when the meter keeps tokens, their log-probabilities lined up with the text."""
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        progress = _Progress(cancel)
        finish: str | None = None
        text: list[str] = []
        if meter is not None:
            kwargs = {**kwargs, "logits_processor": LogitsProcessorList([meter])}
        for chunk in llama.create_completion(
            prompt=tokens, stream=True, stopping_criteria=StoppingCriteriaList([progress]), **kwargs
        ):
            choice = chunk["choices"][0]
            if choice["text"]:
                text.append(choice["text"])
                emit(StreamDelta(content=choice["text"]))
            finish = choice["finish_reason"] or finish
        if cancel.is_set():
            with self._stats_lock:
                self._abandoned_tokens += progress.sampled
        # llama counts the end-of-turn token it sampled last; OpenAI's usage does not.
        completion_tokens = max(0, progress.sampled - (1 if finish == "stop" else 0))
        entries = aligned_entries(llama, meter, "".join(text)) if meter is not None and meter.keeps_tokens else None
        return finish, Usage(prompt_tokens=len(tokens), completion_tokens=completion_tokens), entries

    async def _acquire(self) -> Llama | None:
        """A free context (None with the batched engine, which queues the request itself)."""
        await self._loaded.wait()
        if self._pool is None:
            raise UpstreamUnavailable(self.unavailable_reason() or "the local model is not loaded")
        if self._engine is not None:
            assert self._batched is not None
            if self._batched.waiting >= self._spec.max_queue and self._engine.active >= self.sequences:
                raise Overloaded(
                    f"The local model is busy ({self._batched.waiting} requests waiting); retry shortly.",
                    headers={"Retry-After": "1"},
                )
            return None
        if self._pool.empty() and self._waiting >= self._spec.max_queue:
            raise Overloaded(
                f"The local model is busy ({self._waiting} requests waiting); retry shortly.",
                headers={"Retry-After": "1"},
            )
        self._waiting += 1
        try:
            async with asyncio.timeout(self._spec.max_queue_wait_s):
                return await self._pool.get()
        except TimeoutError:
            raise Overloaded(
                f"The local model is busy: no instance was free within {self._spec.max_queue_wait_s:g} s.",
                headers={"Retry-After": "1"},
            ) from None
        finally:
            self._waiting -= 1

    def _start_generation(
        self,
        ctx: RequestContext,
        max_tokens: int | None,
        llama: Llama | None,
        emit: Emit,
        cancel: threading.Event,
        meter: ConfidenceMeter | None,
    ) -> asyncio.Future[tuple[str | None, Usage, list[Entry] | None]]:
        if llama is None:
            assert self._batched is not None
            tokens, kwargs = self._prepare(ctx, max_tokens)
            return self._batched.submit(tokens, kwargs, emit, cancel, meter)
        pool = self._pool
        assert pool is not None
        try:
            tokens, kwargs = self._prepare(ctx, max_tokens)
        except BaseException:
            pool.put_nowait(llama)
            raise
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._generate, llama, tokens, kwargs, cancel, emit, meter)
        # The context goes back to the pool when its thread is done, never earlier, even if the
        # request that started it was cancelled.
        future.add_done_callback(lambda _: pool.put_nowait(llama))
        return future

    async def complete(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> Completion:
        llama = await self._acquire()
        parts: list[str] = []
        cancel = threading.Event()
        meter = meter_for(ctx, confidence, cancel, self._probe_for(confidence))
        future = self._start_generation(ctx, max_tokens, llama, lambda d: parts.append(d.content or ""), cancel, meter)
        try:
            finish, usage, entries = await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()
            self._cancelled += 1
            raise
        self._served += 1
        content, extra, finish = "".join(parts), {}, finish or "stop"
        if names := tool_names(ctx.passthrough):
            content, extra, finish = answered(content, finish, names)
        return Completion(
            content=content,
            finish_reason=finish,
            usage=usage,
            model=self.name,
            message_extra=extra,
            confidence=meter.result() if meter else None,
            logprobs=formatted_logprobs(ctx, entries),
        )

    def stream(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> AsyncIterator[StreamDelta]:
        deltas = self._stream(ctx, max_tokens, confidence)
        names = tool_names(ctx.passthrough)
        return with_tool_calls(deltas, names) if names else deltas

    async def _stream(
        self, ctx: RequestContext, max_tokens: int | None, confidence: bool | EarlyCheck
    ) -> AsyncIterator[StreamDelta]:
        llama = await self._acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(delta: StreamDelta) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        meter = meter_for(ctx, confidence, cancel, self._probe_for(confidence))
        future = self._start_generation(ctx, max_tokens, llama, emit, cancel, meter)
        future.add_done_callback(lambda _: queue.put_nowait(_DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            finish, usage, entries = future.result()
            self._served += 1
            # The meter sees each token one step late, so the log-probabilities come with the last chunk.
            yield StreamDelta(
                finish_reason=finish or "stop", usage=usage, model=self.name,
                confidence=meter.result() if meter else None,
                logprobs=formatted_logprobs(ctx, entries),
            )  # fmt: skip
        finally:
            if not future.done() and not cancel.is_set():  # set already: the cascade's early check stopped it
                cancel.set()
                self._cancelled += 1
                log.info("local generation on %s cancelled: the client went away", self.name)


def prompt_settings(spec: LlamaCppModel) -> tuple[str, str | None]:
    """(chat format, system prompt) a local model's prompts are rendered with: the config's, else the
    packaged model's own (for a file of your own: its GGUF template, no system prompt)."""
    packaged = None if spec.model_path else packaged_model(spec.package)
    chat_format = spec.chat_format or (packaged.chat_format if packaged else "gguf")
    system = spec.system_prompt if spec.system_prompt is not None else (packaged.system_prompt if packaged else None)
    return chat_format, system
