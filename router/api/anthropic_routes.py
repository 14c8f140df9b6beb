"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) on the same pipeline as the
OpenAI routes: a Messages request is translated (`anthropic_format.py`), routed, cached, retried,
priced and limited exactly like a chat completion, and answered in Anthropic's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from router.api.anthropic_format import (
    FORWARDED_HEADERS,
    CountTokensRequest,
    EventWriter,
    MessagesRequest,
    chat_messages,
    generation,
    message_body,
)
from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.openapi import json_body
from router.api.serving import chat_context, components, request_headers, respond, write_stream
from router.api.translation import Leftovers, native_request
from router.pipeline import StreamResult
from router.types import RequestContext

anthropic_api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


@anthropic_api.post("/messages", openapi_extra=json_body(MessagesRequest))
async def messages(request: Request) -> Response:
    c = components(request)
    body = await parse_request(request, MessagesRequest, c.config.server.max_body_bytes)
    left = Leftovers()
    messages = chat_messages(body, left)
    params, passthrough = generation(body, left)
    native = native_request("messages", body.model_dump(exclude_unset=True), request_headers(request), left,
                            FORWARDED_HEADERS, request.url.query)  # fmt: skip
    ctx = chat_context(request, body.model, messages, params, passthrough, body.stream, native, left.omitted)
    return await respond(request, ctx, lambda ctx, done: message_body(ctx.request_id, done), _events)


def _events(ctx: RequestContext, result: StreamResult) -> AsyncIterator[bytes]:
    return write_stream(ctx, result, EventWriter(ctx.request_id, result.served.model, ctx.prompt_tokens))


@anthropic_api.post("/messages/count_tokens", openapi_extra=json_body(CountTokensRequest))
async def count_tokens(request: Request) -> dict[str, Any]:
    """The prompt's size in the local model's tokens (the gateway's own count, used by rules and limits)."""
    c = components(request)
    body = await parse_request(request, CountTokensRequest, c.config.server.max_body_bytes)
    ctx = RequestContext(
        request_id=request.state.request_id, kind="chat", requested_model=body.model, messages=chat_messages(body)
    )
    return {"input_tokens": c.pipeline.prepare(ctx).prompt_tokens}
