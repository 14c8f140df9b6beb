"""OpenAI's Responses API (`POST /v1/responses`, stateless) on the same pipeline as chat completions."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.openapi import json_body
from router.api.responses_format import (
    FORWARDED_HEADERS,
    EventWriter,
    ResponsesRequest,
    chat_messages,
    completed_response,
    generation,
)
from router.api.serving import chat_context, components, request_headers, respond, write_stream
from router.api.translation import Leftovers, native_request
from router.pipeline import StreamResult
from router.types import RequestContext

responses_api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


@responses_api.post("/responses", openapi_extra=json_body(ResponsesRequest))
async def responses(request: Request) -> Response:
    c = components(request)
    body = await parse_request(request, ResponsesRequest, c.config.server.max_body_bytes)
    left = Leftovers()
    messages = chat_messages(body, left)
    params, passthrough = generation(body, left)
    native = native_request("responses", body.model_dump(exclude_unset=True), request_headers(request), left,
                            FORWARDED_HEADERS)  # fmt: skip
    ctx = chat_context(request, body.model, messages, params, passthrough, body.stream, native, left.omitted)

    def events(ctx: RequestContext, result: StreamResult) -> AsyncIterator[bytes]:
        return write_stream(ctx, result, EventWriter(ctx.request_id, body, result.served.model))

    return await respond(request, ctx, lambda ctx, done: completed_response(ctx.request_id, body, done), events)
