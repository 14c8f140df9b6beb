"""Operational endpoints: health, readiness, and the router's own view of policy and decisions."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from router.api.auth import authenticate
from router.api.body import parse_request
from router.api.openapi import json_body
from router.cache import scope_tag
from router.components import Components
from router.errors import PermissionDenied
from router.quality.monitor import auto_thresholds
from router.schemas import ChatMessage
from router.types import RequestContext

ops = APIRouter()
router_api = APIRouter(prefix="/v1/router", dependencies=[Depends(authenticate)])


def _components(request: Request) -> Components:
    return request.app.state.components


@ops.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about the models."""
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 once every usable model is loaded (local model, cloud client), else 503 and why."""
    c = _components(request)
    local = c.local_backend
    # Every model that can answer as configured must be ready: a cloud model whose key is missing
    # does not hold readiness back (its requests fall back), but one still starting up does.
    waiting_for = [b.name for b in c.backends.values() if not b.ready and b.unavailable_reason() is None]
    if not c.ledger.ready:
        waiting_for.append("pricing")
    embeddings = c.pipeline.embeddings
    if embeddings is not None and embeddings.started and not embeddings.settled:
        waiting_for.append("embedder")
    engine = c.pipeline.router.policy
    if engine.needs_intents and engine.intents is None and embeddings is not None and embeddings.ready:
        waiting_for.append("intents")
    ready = not waiting_for
    body: dict[str, Any] = {
        "status": "ready" if ready else "starting",
        "local_model": {"name": local.name, **local.stats()},
        "policy": c.pipeline.router.policy.version,
        "shared_state": "none" if c.redis is None else ("redis" if c.redis.available else "redis-unreachable"),
        "cache": c.pipeline.cache.store.describe() if c.pipeline.cache is not None else {"store": "off"},
    }
    if c.pipeline.scorer is not None and engine.policy.uses_classifier:
        body["classifier"] = c.pipeline.scorer.describe()
    if embeddings is not None and embeddings.error:
        body["embedder_error"] = embeddings.error
    if waiting_for:
        body["starting"] = waiting_for
    if (reason := local.unavailable_reason()) is not None:
        body["status"] = "failed"
        body["error"] = reason
    return JSONResponse(body, status_code=200 if ready else 503)


@ops.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the gateway's metrics."""
    c = _components(request)
    c.metrics.loop_tasks.set(len(asyncio.all_tasks()))
    for backend in c.backends.values():
        stats = backend.stats()
        if stats.get("engine") == "llama-cpp":  # queue gauges are read when scraped, not kept up to date
            c.metrics.local_queue.labels(backend.name).set(stats["waiting"])
            c.metrics.local_busy.labels(backend.name).set(stats["busy"])
    if c.pipeline.cache is not None:
        entries, size = c.pipeline.cache.store.totals()
        c.metrics.cache_entries.set(entries)
        c.metrics.cache_bytes.set(size)
    return Response(c.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router_api.get("/stats")
async def stats(request: Request, window: str = "24h") -> dict[str, Any]:
    """The savings story for a window (`15m`, `1h`, `24h`, `7d`...): what the dashboard shows."""
    c = _components(request)
    view = await c.ledger.read_window(window)
    body = c.ledger.summary(view)
    if c.pipeline.cache is not None:
        body["cache"] = c.pipeline.cache.stats()
    if c.quality is not None:
        body["quality"] = await c.quality.report(window, view=view)
    return body


class CacheClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: str | None = Field(None, description="Only this tenant's entries; unset: everything (open access only).")


@router_api.post("/cache/clear", openapi_extra=json_body(CacheClearRequest))
async def clear_cache(request: Request) -> dict[str, Any]:
    """Drop cached answers. With API keys on, a caller clears its own tenant's entries and no one else's."""
    c = _components(request)
    body = await parse_request(request, CacheClearRequest, c.config.server.max_body_bytes)
    if c.pipeline.cache is None:
        return {"cleared": 0, "cache": "off"}
    if c.api_keys:
        caller = getattr(request.state, "tenant", None)
        if c.config.cache.scope == "global":
            raise PermissionDenied("The cache is shared by all tenants (scope: global): use `router cache clear`.")
        if body.tenant not in (None, caller):
            raise PermissionDenied("An API key may only clear its own tenant's cache.")
        scope: str | None = scope_tag(caller, "tenant")
    else:
        scope = None if body.tenant is None else scope_tag(body.tenant, c.config.cache.scope)
    return {"cleared": await c.pipeline.cache.clear(scope)}


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


@router_api.post("/explain", openapi_extra=json_body(ExplainRequest))
async def explain(request: Request) -> dict[str, Any]:
    """Which route a request would take and why, without calling any model or counting it against limits."""
    c = _components(request)
    body = await parse_request(request, ExplainRequest, c.config.server.max_body_bytes)
    headers = {k.lower(): v for k, v in body.headers.items()}
    fields = ("metadata", "tools", "response_format", "logprobs", "top_logprobs")
    passthrough = {name: getattr(body, name) for name in fields if getattr(body, name) is not None}
    ctx = RequestContext(
        request_id=request.state.request_id,
        kind="chat",
        requested_model=body.model,
        messages=tuple(m.model_dump(exclude_none=True) for m in body.messages),
        headers=headers,
        passthrough=passthrough,
        tenant=getattr(request.state, "tenant", None) or headers.get(c.config.ledger.tenant_header.lower()),
        key_name=getattr(request.state, "key_name", None),
    )
    return await c.pipeline.explain(ctx)


@router_api.get("/policy")
async def policy(request: Request) -> dict[str, Any]:
    """The policy in force: its version and hash, where it was read from, the last reload and any refused edit."""
    c = _components(request)
    engine = c.pipeline.router.policy
    body: dict[str, Any] = {
        "source": engine.source,
        "version": engine.version,
        "sha256": engine.digest,
        "files": [str(f) for f in engine.files],
        "default": engine.policy.default.model_dump(exclude_none=True),
        "rules": [
            rule.model_dump(by_alias=True, exclude_none=True) | {"origin": rule.origin}
            for rule in engine.rules_for(None)
        ],
        "tenants": sorted(engine.policy.tenants),
        "intents": {
            name: {
                "examples": len(intent.examples),
                "counter_examples": len(intent.counter_examples),
                "threshold": intent.threshold if intent.threshold is not None else engine.policy.intent_threshold,
            }
            for name, intent in engine.policy.intents.items()
        },
        "intents_embedded": engine.intents is not None,
        "tests": len(engine.policy.tests),
    }
    if c.policy_watcher is not None:
        body["reload"] = asdict(c.policy_watcher.status)
    live = c.pipeline.router.live_thresholds
    body["thresholds"] = {
        key: {"written": written, "live": live.get(key, written)}
        | (c.monitor.status.get(key, {}) if c.monitor is not None else {})
        for key, written in auto_thresholds(c.pipeline.router).items()
    }
    if c.config.auto_calibrate is not None:
        body["auto_calibrate"] = c.config.auto_calibrate.model_dump()
    return body
