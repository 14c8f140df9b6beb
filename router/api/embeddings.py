"""`POST /v1/embeddings`: HTTP in, HTTP out; the request goes through the pipeline like any other.

The local names are `local`, `all-minilm-l6-v2` and `sentence-transformers/all-MiniLM-L6-v2` (the
embedder the classifier and the semantic cache already run, ONNX on the CPU, 384 dimensions); any
configured `litellm` or `openai-compatible` model is called for its embeddings as configured. The
pipeline admits the request against the limits, runs it through the executor (timeouts, retries,
breaker) and records it: a local embedding costs nothing and is priced, as saved, against OpenAI's
`text-embedding-3-small`.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.formatting import router_headers
from router.api.openapi import json_body
from router.api.serving import client_timeout, components, request_headers, tenant_of
from router.errors import InvalidRequest
from router.types import RequestContext

MAX_INPUTS = 2048

embeddings_api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = Field("float", pattern="^(float|base64)$")
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def _texts(body: EmbeddingsRequest) -> tuple[str, ...]:
    value = body.input
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise InvalidRequest("`input` is empty; send a string or a list of strings.", param="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(f"At most {MAX_INPUTS} inputs per request.", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "Token-id input is not supported here (the embedder has its own vocabulary): send text.", param="input"
        )
    return tuple(texts)  # type: ignore[arg-type]


def _encode(vector: Any, encoding: str) -> Any:
    array = np.asarray(vector, dtype=np.float32)
    return base64.b64encode(array.tobytes()).decode() if encoding == "base64" else array.tolist()


@embeddings_api.post("/embeddings", openapi_extra=json_body(EmbeddingsRequest))
async def embeddings(request: Request) -> JSONResponse:
    c = components(request)
    body = await parse_request(request, EmbeddingsRequest, c.config.server.max_body_bytes)
    ctx = RequestContext(
        request_id=request.state.request_id,
        kind="embeddings",
        requested_model=body.model,
        messages=(),
        inputs=_texts(body),
        headers=request_headers(request),
        tenant=tenant_of(request),
        key_name=getattr(request.state, "key_name", None),
        timeout_s=client_timeout(request),
    )
    extra = {"dimensions": body.dimensions} if body.dimensions is not None else {}
    result = await c.pipeline.embed(c.pipeline.prepare(ctx), extra)
    tokens = result.usage.prompt_tokens
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(result.vectors)
        ],
        "model": result.served.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return JSONResponse(answer, headers=router_headers(result.served, ctx.request_id))
