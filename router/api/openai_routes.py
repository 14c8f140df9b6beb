"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/models. HTTP in, HTTP out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.formatting import ChunkWriter, completion_body
from router.api.openapi import json_body
from router.api.serving import client_timeout, components, request_headers, respond, tenant_of, write_stream
from router.components import Components
from router.errors import ModelNotFound
from router.pipeline import StreamResult
from router.routing import LOCAL_EMBEDDER
from router.schemas import ChatCompletionRequest, TextCompletionRequest
from router.types import RequestContext

api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


def _sse(ctx: RequestContext, result: StreamResult) -> AsyncIterator[bytes]:
    return write_stream(ctx, result, ChunkWriter(ctx, result.served.model))


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
    """Every name a client may send: the routing names, the configured models and aliases, and the gateway's
    own embedding model (what clients that discover models first look for before `/v1/embeddings`)."""
    return list(dict.fromkeys(["auto", "local", "cloud", *c.config.models, *c.config.aliases, LOCAL_EMBEDDER]))


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
