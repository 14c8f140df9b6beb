"""A pool of OpenAI-compatible servers called directly over HTTP (aiohttp), with no SDK in between.

For `engine: openai-compatible` (llama.cpp's server, vLLM, Ollama, OpenAI itself, any proxy that speaks
its API) there is nothing for litellm to translate, and litellm's per-call work (building its kwargs,
its client, its logging objects) costs more than the gateway's whole request path. Here a request is
one JSON body written once and one pooled keep-alive connection; a streamed answer is read line by
line. Unknown request fields (`tools`, `response_format`, vendor extensions) go into the body as sent:
the upstream speaks this API, and where the call goes (URL, key) is set only by the config.

aiohttp rather than httpx: profiled under load (bench/overhead.py), httpx's connection pool spent ~40%
of the gateway's CPU choosing a connection (it checks every pooled socket per request); aiohttp's
C-accelerated client does the same exchange for a fraction of that.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from router.backends.admission import Admission
from router.backends.confidence import EarlyCheck
from router.config import OpenAICompatibleModel, read_secret_env
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
STREAM_EXTRA = ("tool_calls", "function_call", "refusal")


def _message(body: bytes) -> str:
    """The upstream's own error message, if its body is OpenAI's error envelope."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def error_for_status(model: str, status: int, body: bytes, headers: Mapping[str, str]) -> RouterError:
    """One place that turns an upstream's HTTP status into the gateway's error hierarchy."""
    message = _message(body)
    if status == 429:
        retry_after = headers.get("retry-after")
        return RateLimited(
            f"{model} is rate limiting: {message}", headers={"Retry-After": retry_after} if retry_after else {}
        )
    if status in (401, 403):
        return UpstreamRejected(f"{model} refused the gateway's credentials: {message}", code="upstream_auth_failed")
    if status == 404:
        return UpstreamRejected(
            f"{model} does not know the configured model: {message}", code="upstream_model_not_found"
        )
    if status in (400, 413, 422):
        code = "context_length_exceeded" if "context" in message.lower() else "invalid_request"
        return InvalidRequest(f"{model} rejected the request: {message}", code=code)
    if status in (502, 503, 504):
        return UpstreamUnavailable(f"{model} is unavailable ({status}): {message}")
    return UpstreamError(f"{model} failed ({status}): {message}")


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict) or raw.get("prompt_tokens") is None:
        return None
    return Usage(prompt_tokens=raw.get("prompt_tokens") or 0, completion_tokens=raw.get("completion_tokens") or 0)


class OpenAIHttpBackend:
    def __init__(self, name: str, spec: OpenAICompatibleModel) -> None:
        self.name = name
        self.tier = spec.tier
        self.measures_confidence = False
        self._spec = spec
        self._bases = itertools.cycle([base.rstrip("/") for base in spec.api_base])
        key = read_secret_env(spec.api_key_env)
        self._headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
        self._admission = Admission(name, spec.max_concurrency, spec.max_queue)
        timeouts = spec.timeouts
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total_s, sock_connect=timeouts.connect_s)
        self._session: aiohttp.ClientSession | None = None
        self._served = 0
        self._failed = 0

    def _client(self) -> aiohttp.ClientSession:
        """One session (connection pool) per backend, made on first use inside the running loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._spec.max_concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=True)
        return self._session

    async def start(self) -> None:
        self._client()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def ready(self) -> bool:
        return True

    def unavailable_reason(self) -> str | None:
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self._spec.engine,
            "ready": True,
            "upstreams": len(self._spec.api_base),
            "served": self._served,
            "failed": self._failed,
            "in_flight": self._admission.in_flight,
            "waiting": self._admission.waiting,
            "available": True,
        }

    def _request(self, ctx: RequestContext, max_tokens: int | None, stream: bool) -> tuple[str, bytes]:
        """(URL, JSON body) of one call; the next server of the pool each time."""
        body: dict[str, Any] = {**ctx.passthrough, **{k: v for k, v in ctx.params.items() if k != "max_tokens"}}
        body["model"] = self._spec.model
        if ctx.kind == "chat":
            body["messages"] = [dict(m) for m in ctx.messages]
            path = "/chat/completions"
        else:
            body["prompt"] = ctx.prompt
            path = "/completions"
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}  # the gateway needs usage even when the client does not
        else:
            body.pop("stream_options", None)
        return next(self._bases) + path, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    async def embed(self, texts: list[str], extra: Mapping[str, Any]) -> tuple[list[list[float]], int]:
        """Embeddings from the pool's `/embeddings` (vectors, prompt tokens), for `/v1/embeddings`."""
        body = json.dumps({**extra, "model": self._spec.model, "input": texts, "encoding_format": "float"}).encode()
        async with self._exchange(next(self._bases) + "/embeddings", body, {}) as response:
            raw = await response.read()
        try:
            answer = json.loads(raw)
            vectors = [row["embedding"] for row in sorted(answer["data"], key=lambda row: row.get("index", 0))]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"{self.name} sent embeddings in a shape we do not know: {raw[:200]!r}") from exc
        return vectors, int((answer.get("usage") or {}).get("prompt_tokens") or 0)

    @contextlib.asynccontextmanager
    async def _exchange(
        self, url: str, body: bytes, extra_headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send; map transport failures and error statuses; yield the open response."""
        headers = {**extra_headers, **self._headers} if extra_headers else self._headers
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                if response.status >= 400:
                    self._failed += 1
                    raise error_for_status(self.name, response.status, await response.read(), response.headers)
                yield response
        except TimeoutError as exc:
            self._failed += 1
            raise UpstreamTimeout(f"{self.name} did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            self._failed += 1
            raise UpstreamError(f"cannot reach {self.name}: {exc}", code="upstream_unreachable") from exc
        except aiohttp.ClientError as exc:
            self._failed += 1
            raise UpstreamError(f"{self.name} broke off the answer: {exc!r}") from exc

    async def complete(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> Completion:
        async with (
            self._admission.slot(),
            self._exchange(*self._request(ctx, max_tokens, stream=False), ctx.upstream_headers) as response,
        ):
            raw = await response.read()
        try:
            body = json.loads(raw)
            choice = body["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._failed += 1
            raise UpstreamError(f"{self.name} sent an answer that is not a completion: {raw[:200]!r}") from exc
        if ctx.kind == "chat":
            message = dict(choice.get("message") or {})
            content = message.pop("content", None)
            message.pop("role", None)
            extra = {k: v for k, v in message.items() if v is not None}
        else:
            content, extra = choice.get("text"), {}
        self._served += 1
        return Completion(
            content=content,
            finish_reason=choice.get("finish_reason"),
            usage=_usage(body.get("usage")) or Usage(),
            model=body.get("model") or self.name,
            message_extra=extra,
            logprobs=choice.get("logprobs"),
        )

    async def stream(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> AsyncIterator[StreamDelta]:
        async with (
            self._admission.slot(),
            self._exchange(*self._request(ctx, max_tokens, stream=True), ctx.upstream_headers) as response,
        ):
            async for raw_line in response.content:
                line = raw_line.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                for delta in self._deltas(ctx, data):
                    yield delta
        self._served += 1

    def _deltas(self, ctx: RequestContext, data: str) -> list[StreamDelta]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamError(f"{self.name} sent a stream chunk that is not JSON: {data[:200]!r}") from exc
        if "error" in chunk:
            raise UpstreamError(f"{self.name} failed mid-stream: {_message(data.encode())}")
        out = []
        model = chunk.get("model")
        for choice in chunk.get("choices") or []:
            if ctx.kind == "chat":
                delta = choice.get("delta") or {}
                content = delta.get("content")
                extra = {k: delta[k] for k in STREAM_EXTRA if delta.get(k) is not None}
            else:
                content, extra = choice.get("text"), {}
            if content or extra or choice.get("finish_reason") or choice.get("logprobs"):
                out.append(
                    StreamDelta(
                        content=content or None,
                        finish_reason=choice.get("finish_reason"),
                        delta_extra=extra,
                        model=model,
                        logprobs=choice.get("logprobs"),
                    )
                )
        if (usage := _usage(chunk.get("usage"))) is not None:
            out.append(StreamDelta(usage=usage))
        return out
