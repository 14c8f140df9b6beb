"""What every API the gateway speaks shares: reading the request's context from HTTP, running it through
the pipeline, and answering it finished or streamed in that API's shape (OpenAI's chat and text
completions, Anthropic's Messages, OpenAI's Responses)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from router.api.formatting import router_headers
from router.components import Components
from router.errors import InvalidRequest, RouterError
from router.pipeline import StreamResult
from router.types import Completion, NativeRequest, RequestContext, Served, StreamDelta

log = logging.getLogger(__name__)
T = TypeVar("T")
SECRET_HEADERS = frozenset({"authorization", "x-api-key"})


def components(request: Request) -> Components:
    return request.app.state.components


def client_timeout(request: Request) -> float | None:
    """`x-router-timeout: SECONDS`: the client's deadline for this request, if sooner than the server's."""
    raw = request.headers.get("x-router-timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise InvalidRequest("x-router-timeout must be a number of seconds above 0.", param="x-router-timeout")
    return value


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers, lower-cased, without the credentials (policies and logs see the rest)."""
    return {k.lower(): v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS}


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (so a local generation stops)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.Event()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone.set()
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if gone.is_set():
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


async def respond(
    request: Request,
    ctx: RequestContext,
    body_of: Callable[[RequestContext, Completion], dict[str, Any]],
    events_of: Callable[[RequestContext, StreamResult], AsyncIterator[bytes]],
) -> Response:
    """Run a request through the pipeline and answer it in one API's shape: `body_of` renders a finished
    answer, `events_of` a stream. Every API the gateway speaks (OpenAI, Anthropic, Responses) uses this."""
    pipeline = components(request).pipeline
    ctx = pipeline.prepare(ctx)
    if not ctx.stream:
        try:
            completion, served = await until_disconnect(request, pipeline.complete(ctx))
        except ClientGone:
            return Response(status_code=499)  # nobody is listening; this only reaches the access log
        body = completion.native if completion.native is not None else body_of(ctx, completion)
        return JSONResponse(body, headers=_headers(ctx, served))
    result = await pipeline.stream(ctx)
    return StreamingResponse(
        events_of(ctx, result),
        media_type="text/event-stream",
        headers={**_headers(ctx, result.served), "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _headers(ctx: RequestContext, served: Served) -> dict[str, str]:
    headers = router_headers(served, ctx.request_id)
    if served.native:
        headers["x-router-native"] = ctx.native.api if ctx.native is not None else "true"
    elif ctx.omitted:
        headers["x-router-omitted"] = ", ".join(ctx.omitted)
    return headers


def tenant_of(request: Request) -> str | None:
    """The API key's tenant; with open access, the tenant header's value (`ledger.tenant_header`), if any."""
    keyed = getattr(request.state, "tenant", None)
    if keyed is not None:
        return keyed
    return request.headers.get(components(request).config.ledger.tenant_header) or None


def chat_context(
    request: Request, model: str, messages: tuple[Mapping[str, Any], ...], params: dict[str, Any],
    passthrough: dict[str, Any], stream: bool, native: NativeRequest, omitted: list[str],
) -> RequestContext:  # fmt: skip
    """The pipeline's context for a chat request translated from another API (usage is always kept), with
    the client's own request kept whole for a model of its API."""
    return RequestContext(
        request_id=request.state.request_id,
        kind="chat",
        requested_model=model,
        messages=messages,
        params=params,
        passthrough=passthrough,
        stream=stream,
        include_usage=True,
        headers=request_headers(request),
        tenant=tenant_of(request),
        key_name=getattr(request.state, "key_name", None),
        timeout_s=client_timeout(request),
        native=native,
        omitted=tuple(omitted),
    )


class StreamWriter(Protocol):
    """One API's stream format: what opens it, each delta, an error after it started, what closes it."""

    def start(self) -> bytes: ...
    def delta(self, delta: StreamDelta) -> bytes: ...
    def error(self, exc: RouterError) -> bytes: ...
    def end(self) -> bytes: ...


async def write_stream(ctx: RequestContext, result: StreamResult, writer: StreamWriter) -> AsyncIterator[bytes]:
    """The stream in the API's shape; a provider's own events (a native pass-through) go on as they came,
    framing included, so the writer adds only an error event."""
    native = result.served.native
    if not native and (opening := writer.start()):
        yield opening
    try:
        async for delta in result.deltas:
            if chunk := (delta.native if native else writer.delta(delta)):
                yield chunk
    except RouterError as exc:
        # Headers and earlier chunks are gone already: end with an error event the client can raise.
        log.warning("request %s: stream failed after it started: %s", ctx.request_id, exc.message)
        yield writer.error(exc)
        return
    if not native:
        yield writer.end()
