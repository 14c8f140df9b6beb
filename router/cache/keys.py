"""What makes two requests the same question: the normalised request, hashed, within a scope.

The exact key covers everything that changes an answer: the kind of request, the model the route chose,
every message, and the parameters (temperature, top_p, max tokens, stop, seed, penalties, tools,
response format and any other field passed through to the upstream). The semantic partition is the
same hash without the last user message: a near-repeat only matches an answer given in the same
conversation, with the same system prompt and parameters. Scope (the tenant, or everyone) is part of
both the store key and the partition, so one tenant can never read another's entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from router.types import CacheSettings, Decision, RequestContext, content_text

IGNORED_FIELDS = frozenset({"user", "metadata", "store", "stream_options", "service_tier", "parallel_tool_calls"})
"""Request fields that do not change the answer."""
UNCACHEABLE = ("logprobs", "top_logprobs", "echo")
"""Answers that carry more than we store (token log-probabilities) are never cached."""


@dataclass(frozen=True, slots=True)
class CacheKey:
    scope: str
    """Tenant tag (a hash of the tenant's name) or `global`."""
    exact: str
    """Store key of this request's answer: scope + hash of the whole normalised request."""
    partition: str
    question: str | None
    """The last user message's text, for the semantic cache; None when the request does not end with one."""


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scope_tag(tenant: str | None, scope: str) -> str:
    if scope == "global":
        return "global"
    return "t-" + hashlib.sha256((tenant or "").encode()).hexdigest()[:16]


def cache_key(ctx: RequestContext, decision: Decision, scope: str) -> CacheKey:
    params = {k: v for k, v in ctx.params.items() if k not in IGNORED_FIELDS}
    passthrough = {k: v for k, v in ctx.passthrough.items() if k not in IGNORED_FIELDS}
    messages = list(ctx.messages)
    last = messages[-1] if messages else None
    ends_with_question = last is not None and last.get("role") == "user"
    tag = scope_tag(ctx.tenant, scope)
    context = {
        "scope": tag,
        "kind": ctx.kind,
        "model": decision.model,
        "params": params,
        "extra": passthrough,
        "history": messages[:-1] if ends_with_question else messages,
    }
    partition = _digest(context)
    exact = _digest({"partition": partition, "last": last if ends_with_question else None})
    question = content_text(last.get("content")) if ends_with_question and last is not None else None
    return CacheKey(tag, f"{tag}:{exact}", partition, question or None)


def not_cacheable(ctx: RequestContext, settings: CacheSettings) -> str | None:
    """Why this request's answer may not come from or go to the cache, or None when it may."""
    if not settings.enabled:
        return "caching is off for this route"
    if any(ctx.passthrough.get(name) or ctx.params.get(name) for name in UNCACHEABLE):
        return "log-probabilities were asked for"
    if (ctx.params.get("n") or 1) > 1:
        return "several choices were asked for"
    # OpenAI's default temperature is 1: a request that names none asks for a sampled answer.
    if float(ctx.params.get("temperature", 1.0)) > 0 and not settings.sampled:
        return "sampled request (temperature > 0)"
    return None
