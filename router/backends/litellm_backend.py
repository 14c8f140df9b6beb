"""Models reached through litellm: any cloud provider litellm supports (OpenAI-compatible pools have their
own direct backend, `openai_http.py`).

litellm is imported once, on a worker thread at start-up (it costs seconds), never per request. Clients
can never steer where a call goes: only OpenAI's own request parameters are passed as litellm keyword
arguments; every other unknown field rides in `extra_body`, which litellm forwards to the provider's
request body without interpreting it (so a client's `api_base` or `api_key` field reaches nothing).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from router.backends.admission import Admission
from router.backends.confidence import EarlyCheck
from router.backends.native_api import NativeForwarder
from router.capabilities import model_capabilities
from router.config import LiteLLMModel, read_secret_env
from router.errors import (
    InvalidRequest,
    RateLimited,
    RouterError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from router.types import Completion, RequestContext, StreamDelta, Usage

log = logging.getLogger(__name__)

# OpenAI request parameters that litellm understands and translates for each provider.
OPENAI_PARAMS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "logprobs",
        "top_logprobs",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "service_tier",
        "store",
        "web_search_options",
        "verbosity",
    }
)


def import_litellm() -> Any:
    # Never reach for the network to refresh the price map at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    # One INFO line per call from litellm is noise next to our own per-request line.
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    return litellm


def split_passthrough(passthrough: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(OpenAI parameters for litellm, everything else for the provider's request body)."""
    known = {k: v for k, v in passthrough.items() if k in OPENAI_PARAMS}
    extra = {k: v for k, v in passthrough.items() if k not in OPENAI_PARAMS}
    return known, extra


def _is_connection_failure(exc: BaseException) -> bool:
    """litellm reports a refused connection as an InternalServerError; the cause chain tells the truth."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, httpx.ConnectError | httpx.ConnectTimeout | ConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def map_litellm_error(litellm: Any, exc: Exception, model: str) -> RouterError:
    """One place that turns litellm's exceptions into the gateway's error hierarchy."""
    message = str(getattr(exc, "message", None) or exc)
    if isinstance(exc, litellm.Timeout):
        return UpstreamTimeout(f"{model} did not answer in time: {message}")
    if isinstance(exc, litellm.ContextWindowExceededError):
        return InvalidRequest(f"{model}: {message}", code="context_length_exceeded")
    if isinstance(exc, litellm.RateLimitError):
        headers = {}
        # litellm keeps the upstream's own headers here; `exc.response` is often a stand-in without them.
        upstream = getattr(exc, "litellm_response_headers", None) or getattr(
            getattr(exc, "response", None), "headers", None
        )
        retry_after = upstream.get("retry-after") if upstream is not None else None
        if retry_after:
            headers["Retry-After"] = retry_after
        return RateLimited(f"{model} is rate limiting: {message}", headers=headers)
    if isinstance(exc, litellm.UnsupportedParamsError | litellm.BadRequestError):
        return InvalidRequest(f"{model} rejected the request: {message}")
    if isinstance(exc, litellm.ServiceUnavailableError):
        return UpstreamUnavailable(f"{model} is unavailable: {message}")
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return UpstreamRejected(f"{model} refused the gateway's credentials: {message}", code="upstream_auth_failed")
    if isinstance(exc, litellm.NotFoundError):
        return UpstreamRejected(
            f"{model} does not know the configured model: {message}", code="upstream_model_not_found"
        )
    if isinstance(exc, litellm.APIConnectionError) or _is_connection_failure(exc):
        return UpstreamError(f"cannot reach {model}: {message}", code="upstream_unreachable")
    return UpstreamError(f"{model} failed: {message}")


def _plain(value: Any) -> Any:
    """litellm's response objects (pydantic models) as plain JSON values."""
    if value is None or isinstance(value, dict | list):
        return value
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


class LiteLLMBackend:
    def __init__(self, name: str, spec: LiteLLMModel) -> None:
        self.name = name
        self.tier = spec.tier
        self.measures_confidence = False
        self._spec = spec
        self._model = spec.model
        self._api_base = spec.api_base
        self._api_key = read_secret_env(spec.api_key_env)
        self._admission = Admission(name, spec.max_concurrency, spec.max_queue)
        self._timeout = httpx.Timeout(spec.timeouts.total_s, connect=spec.timeouts.connect_s)
        self._litellm: Any = None
        self._warm = False
        self._import: asyncio.Task[Any] | None = None
        self._served = 0
        self._failed = 0
        api = next((a for a in ("messages", "responses") if a in model_capabilities(spec)), None)
        self._native = None if api is None else NativeForwarder(
            name, api, spec.model, spec.api_base, self._api_key, spec.timeouts.total_s, spec.timeouts.connect_s
        )  # fmt: skip

    async def start(self) -> None:
        if self.unavailable_reason() is not None:
            return  # it can never answer as configured (no key): importing litellm would only slow the start
        litellm = await self._lib()
        # litellm's first call pays for lazy imports and client set-up (seconds on two cores); pay it
        # here, with a mocked answer that never leaves the process, instead of in a client's request.
        try:
            await litellm.acompletion(
                model=self._model,
                messages=[{"role": "user", "content": "warm-up"}],
                mock_response="ok",
                api_key="warm-up",
            )
        except Exception as exc:  # a model string litellm cannot mock still works for real calls
            log.info("warm-up of %s skipped: %s", self.name, exc)
        self._warm = True

    async def close(self) -> None:
        if self._import is not None and not self._import.done():
            self._import.cancel()
        if self._native is not None:
            await self._native.close()

    @property
    def native_api(self) -> str | None:
        """The client API this model takes whole (`messages`, `responses`), if any."""
        return None if self._native is None else self._native.api

    @property
    def ready(self) -> bool:
        return self._warm

    def unavailable_reason(self) -> str | None:
        spec = self._spec
        if isinstance(spec, LiteLLMModel) and spec.api_key_env and not self._api_key and spec.api_base is None:
            return f"no API key: set {spec.api_key_env} to use {self.name}"
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self._spec.engine,
            "ready": self.ready,
            "upstreams": 1,
            "served": self._served,
            "failed": self._failed,
            "in_flight": self._admission.in_flight,
            "waiting": self._admission.waiting,
            "available": self.unavailable_reason() is None,
        }

    async def _lib(self) -> Any:
        if self._litellm is None:
            if self._import is None:
                self._import = asyncio.create_task(asyncio.to_thread(import_litellm))
            # Shielded: a request that times out while waiting must not cancel the import for everyone.
            self._litellm = await asyncio.shield(self._import)
        return self._litellm

    def _kwargs(self, ctx: RequestContext, max_tokens: int | None, stream: bool) -> dict[str, Any]:
        known, extra = split_passthrough(ctx.passthrough)
        params = {k: v for k, v in ctx.params.items() if k != "max_tokens"}
        kwargs: dict[str, Any] = {
            "model": self._model,
            "api_base": self._api_base,
            "timeout": self._timeout,
            # Retries are the executor's job (with backoff, breakers and a deadline), not the SDK's.
            "max_retries": 0,
            "stream": stream,
            **params,
            **known,
        }
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if extra:
            kwargs["extra_body"] = extra
        if ctx.upstream_headers:
            kwargs["extra_headers"] = dict(ctx.upstream_headers)
        if stream:
            # Always ask for usage: the gateway needs it even when the client did not.
            kwargs["stream_options"] = {"include_usage": True}
        if ctx.kind == "chat":
            kwargs["messages"] = [dict(m) for m in ctx.messages]
            if ctx.prefill() is not None:  # routed here only when configured to continue it (`prefill`)
                kwargs["messages"][-1]["prefix"] = True  # litellm's mark for DeepSeek's and Mistral's prefill
        else:
            kwargs["prompt"] = ctx.prompt
        return kwargs

    async def embed(self, texts: list[str], extra: dict[str, Any]) -> tuple[list[list[float]], int]:
        """Embeddings through litellm (vectors, prompt tokens), for `/v1/embeddings`."""
        litellm = await self._lib()
        # Retries are the executor's (counted, bounded by the deadline), never the provider client's own.
        kwargs: dict[str, Any] = {"model": self._model, "input": texts, "api_base": self._api_base,
                                  "timeout": self._timeout, "max_retries": 0, **extra}  # fmt: skip
        if self._api_key:
            kwargs["api_key"] = self._api_key
        try:
            answer = await litellm.aembedding(**kwargs)
        except Exception as exc:
            self._failed += 1
            raise map_litellm_error(litellm, exc, self.name) from exc
        rows = sorted(answer.data, key=lambda row: row["index"] if isinstance(row, dict) else row.index)
        vectors = [row["embedding"] if isinstance(row, dict) else row.embedding for row in rows]
        return vectors, int(getattr(answer.usage, "prompt_tokens", 0) or 0)

    async def _call(self, ctx: RequestContext, max_tokens: int | None, stream: bool) -> Any:
        litellm = await self._lib()
        call = litellm.acompletion if ctx.kind == "chat" else litellm.atext_completion
        try:
            return await call(**self._kwargs(ctx, max_tokens, stream))
        except RouterError:
            raise
        except Exception as exc:
            self._failed += 1
            raise map_litellm_error(litellm, exc, self.name) from exc

    async def complete(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> Completion:
        if self._native is not None and self._native.speaks(ctx):
            async with self._admission.slot():
                try:
                    completion = await self._native.complete(ctx, max_tokens)
                except RouterError:
                    self._failed += 1
                    raise
            self._served += 1
            return completion
        async with self._admission.slot():
            response = await self._call(ctx, max_tokens, stream=False)
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        if ctx.kind == "chat":
            message = choice.message.model_dump(exclude_none=True)
            content = message.pop("content", None)
            message.pop("role", None)
        else:
            content, message = choice.text, {}
        self._served += 1
        return Completion(
            content=content,
            finish_reason=choice.finish_reason,
            usage=Usage(
                prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            ),
            model=getattr(response, "model", None) or self.name,
            message_extra=message,
            logprobs=_plain(getattr(choice, "logprobs", None)),
        )

    async def stream(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> AsyncIterator[StreamDelta]:
        native = self._native is not None and self._native.speaks(ctx)
        async with self._admission.slot():
            deltas = self._native_stream(ctx, max_tokens) if native else self._stream(ctx, max_tokens)
            async for delta in deltas:
                yield delta

    async def _native_stream(self, ctx: RequestContext, max_tokens: int | None) -> AsyncIterator[StreamDelta]:
        assert self._native is not None
        try:
            async for delta in self._native.stream(ctx, max_tokens):
                yield delta
        except RouterError:
            self._failed += 1
            raise
        self._served += 1

    async def _stream(self, ctx: RequestContext, max_tokens: int | None) -> AsyncIterator[StreamDelta]:
        litellm = await self._lib()
        response = await self._call(ctx, max_tokens, stream=True)
        try:
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                for choice in chunk.choices or []:
                    if ctx.kind == "chat":
                        delta = choice.delta.model_dump(exclude_none=True) if choice.delta else {}
                        content = delta.pop("content", None)
                        delta.pop("role", None)
                        extra = {k: v for k, v in delta.items() if k in ("tool_calls", "function_call", "refusal")}
                    else:
                        content, extra = getattr(choice, "text", None), {}
                    logprobs = _plain(getattr(choice, "logprobs", None))
                    if content or extra or choice.finish_reason or logprobs:
                        yield StreamDelta(
                            content=content or None,
                            finish_reason=choice.finish_reason,
                            delta_extra=extra,
                            model=getattr(chunk, "model", None),
                            logprobs=logprobs,
                        )
                if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
                    yield StreamDelta(
                        usage=Usage(
                            prompt_tokens=usage.prompt_tokens or 0,
                            completion_tokens=usage.completion_tokens or 0,
                        )
                    )
        except RouterError:
            raise
        except Exception as exc:
            self._failed += 1
            raise map_litellm_error(litellm, exc, self.name) from exc
        self._served += 1
