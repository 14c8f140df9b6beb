"""`POST /v1/embeddings`: the gateway's own embedder for its local embedding model, a configured remote
model passed through otherwise, every call priced in the ledger.

The local names are `local`, `all-minilm-l6-v2` and `sentence-transformers/all-MiniLM-L6-v2` (the
embedder the classifier and the semantic cache already run, ONNX on the CPU, 384 dimensions); any
configured `litellm` or `openai-compatible` model is called for its embeddings as configured. A local
embedding costs nothing and is priced, as saved, against OpenAI's `text-embedding-3-small`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.openapi import json_body
from router.api.serving import components, request_headers, tenant_of
from router.classify.embedding_service import EmbeddingService
from router.components import Components
from router.errors import InvalidRequest, ModelNotFound
from router.ledger import CostRecord
from router.ledger.pricing import cost_map_entry
from router.types import RequestContext

LOCAL_NAMES = ("local", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
REFERENCE = "text-embedding-3-small"
"""What a local embedding would have cost in the cloud: OpenAI's small embedding model."""
MAX_INPUTS = 2048

embeddings_api = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = Field("float", pattern="^(float|base64)$")
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def _texts(body: EmbeddingsRequest) -> list[str]:
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
    return texts  # type: ignore[return-value]


def _per_token(model: str) -> float:
    entry = cost_map_entry(model) or {}
    return float(entry.get("input_cost_per_token") or 0.0)


def _service(c: Components, request: Request) -> EmbeddingService:
    """The pipeline's embedder; one of this endpoint's own when the policy and cache needed none."""
    if c.pipeline.embeddings is not None:
        return c.pipeline.embeddings
    service = getattr(request.app.state, "embeddings", None)
    if service is None:
        service = request.app.state.embeddings = EmbeddingService(c.config.embedder)
    return service


def _encode(vector: Any, encoding: str) -> Any:
    array = np.asarray(vector, dtype=np.float32)
    return base64.b64encode(array.tobytes()).decode() if encoding == "base64" else array.tolist()


@embeddings_api.post("/embeddings", openapi_extra=json_body(EmbeddingsRequest))
async def embeddings(request: Request) -> dict[str, Any]:
    c = components(request)
    body = await parse_request(request, EmbeddingsRequest, c.config.server.max_body_bytes)
    texts = _texts(body)
    started = time.monotonic()
    if body.model.lower() in LOCAL_NAMES:
        service = _service(c, request)
        if not service.settled:
            await service.start()
        if not service.ready:
            raise ModelNotFound(f"The local embedder is not available: {service.error}", param="model")
        if body.dimensions is not None:
            raise InvalidRequest("The local embedder has 384 dimensions and cannot shorten them.", param="dimensions")
        vectors = await asyncio.gather(*(service.embed(text) for text in texts))
        tokens = sum(c.pipeline.tokens.count(text) for text in texts)
        route, model, cost, counterfactual = "local", "all-minilm-l6-v2", 0.0, tokens * _per_token(REFERENCE)
    elif body.model in c.backends and hasattr(c.backends[body.model], "embed"):
        extra = {"dimensions": body.dimensions} if body.dimensions is not None else {}
        vectors, tokens = await c.backends[body.model].embed(texts, extra)  # type: ignore[attr-defined]
        spec_model = getattr(c.config.models[body.model], "model", body.model)
        route, model = "cloud", body.model
        cost = counterfactual = tokens * _per_token(spec_model)
    else:
        remote = [name for name, b in c.backends.items() if hasattr(b, "embed")]
        raise ModelNotFound(
            f"No embedding model `{body.model}` here: use `all-minilm-l6-v2` (the gateway's own) or a configured "
            f"remote model ({', '.join(remote) or 'none configured'}).",
            param="model",
        )
    ctx = RequestContext(request_id=request.state.request_id, kind="chat", requested_model=body.model, messages=(),
                         headers=request_headers(request), tenant=tenant_of(request))  # fmt: skip
    c.ledger.add(
        CostRecord(
            at=time.time(), route=route, model=model, rule="embeddings", tenant=c.ledger.tenant_of(ctx), status=200,
            prompt_tokens=tokens, completion_tokens=0, cost_usd=cost, counterfactual_usd=counterfactual,
            latency_ms=(time.monotonic() - started) * 1000,
        )
    )  # fmt: skip
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
