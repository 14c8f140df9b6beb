"""OpenAI's Responses API (`POST /v1/responses`, stateless) on the same pipeline as chat completions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.openai_routes import client_timeout, components, request_headers, respond, tenant_of
from router.api.openapi import json_body
from router.api.responses_format import EventWriter, ResponsesRequest, chat_messages, completed_response, generation
from router.errors import RouterError
from router.pipeline import StreamResult
from router.types import RequestContext

log = logging.getLogger(__name__)
responses_api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


@responses_api.post("/responses", openapi_extra=json_body(ResponsesRequest))
async def responses(request: Request) -> Response:
    c = components(request)
    body = await parse_request(request, ResponsesRequest, c.config.server.max_body_bytes)
    params, passthrough = generation(body)
    ctx = RequestContext(
        request_id=request.state.request_id,
        kind="chat",
        requested_model=body.model,
        messages=chat_messages(body),
        params=params,
        passthrough=passthrough,
        stream=body.stream,
        include_usage=True,
        headers=request_headers(request),
        tenant=tenant_of(request),
        key_name=getattr(request.state, "key_name", None),
        timeout_s=client_timeout(request),
    )
    return await respond(
        request,
        ctx,
        lambda ctx, done: completed_response(ctx.request_id, body, done),
        lambda ctx, result: _events(ctx, body, result),
    )


async def _events(ctx: RequestContext, body: ResponsesRequest, result: StreamResult) -> AsyncIterator[bytes]:
    writer = EventWriter(ctx.request_id, body, result.served.model)
    yield writer.start()
    try:
        async for delta in result.deltas:
            if chunk := writer.delta(delta):
                yield chunk
    except RouterError as exc:
        log.warning("request %s: stream failed after it started: %s", ctx.request_id, exc.message)
        yield writer.error(exc.message)
        return
    yield writer.end()
