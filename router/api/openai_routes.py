"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/models. HTTP in, HTTP out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.errors import sse_error_event
from router.api.formatting import DONE, ChunkWriter, completion_body, router_headers
from router.api.openapi import json_body
from router.components import Components
from router.errors import InvalidRequest, ModelNotFound, RouterError
from router.pipeline import StreamResult
from router.schemas import ChatCompletionRequest, TextCompletionRequest
from router.types import Completion, RequestContext

log = logging.getLogger(__name__)
T = TypeVar("T")

api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


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
    return {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}


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
        return JSONResponse(body_of(ctx, completion), headers=router_headers(served, ctx.request_id))
    result = await pipeline.stream(ctx)
    return StreamingResponse(
        events_of(ctx, result),
        media_type="text/event-stream",
        headers={
            **router_headers(result.served, ctx.request_id),
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        },
    )


async def _sse(ctx: RequestContext, result: StreamResult) -> AsyncIterator[bytes]:
    writer = ChunkWriter(ctx, result.served.model)
    try:
        async for delta in result.deltas:
            if chunk := writer.delta(delta):
                yield chunk
    except RouterError as exc:
        # Headers and earlier chunks are gone already: end with an error event the client can raise.
        log.warning("request %s: stream failed after it started: %s", ctx.request_id, exc.message)
        yield sse_error_event(exc)
        return
    yield DONE


def tenant_of(request: Request) -> str | None:
    """The API key's tenant; with open access, the tenant header's value (`ledger.tenant_header`), if any."""
    keyed = getattr(request.state, "tenant", None)
    if keyed is not None:
        return keyed
    return request.headers.get(components(request).config.ledger.tenant_header) or None


def _context(request: Request, body: Any, kind: str, messages: tuple[Any, ...], prompt: str | None) -> RequestContext:
    return RequestContext(
        request_id=request.state.request_id,
        kind=kind,  # type: ignore[arg-type]
        requested_model=body.model,
        messages=messages,
        prompt=prompt,
        params=body.generation_params(),
        passthrough=body.passthrough(),
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        headers=request_headers(request),
        tenant=tenant_of(request),
        key_name=getattr(request.state, "key_name", None),
        timeout_s=client_timeout(request),
    )


@api.post("/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    c = components(request)
    body = await parse_request(request, ChatCompletionRequest, c.config.server.max_body_bytes)
    ctx = _context(request, body, "chat", body.message_dicts(), None)
    return await respond(request, ctx, completion_body, _sse)


@api.post("/completions", openapi_extra=json_body(TextCompletionRequest))
async def text_completions(request: Request) -> Response:
    c = components(request)
    body = await parse_request(request, TextCompletionRequest, c.config.server.max_body_bytes)
    prompt = body.prompt_text()
    ctx = _context(request, body, "text", ({"role": "user", "content": prompt},), prompt)
    return await respond(request, ctx, completion_body, _sse)


def _model_ids(c: Components) -> list[str]:
    return list(dict.fromkeys(["auto", "local", "cloud", *c.config.models, *c.config.aliases]))


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "hybrid-router"}


@api.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in _model_ids(components(request))]}


@api.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> dict[str, Any]:
    if model_id not in _model_ids(components(request)):
        raise ModelNotFound(f"The model `{model_id}` does not exist on this gateway.", param="model")
    return _model_card(model_id)
