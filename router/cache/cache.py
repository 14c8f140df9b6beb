"""The response cache the pipeline asks: exact first, then semantic, within the request's scope.

`lookup` runs after the routing decision (the key includes the model the route chose, and the matching
rule says whether and how to cache) and before any model is called; `keep` runs once an answer is
complete. Clients steer it per request with `Cache-Control`: `no-cache` skips the lookup (the fresh
answer is still stored), `no-store` keeps the answer out of the cache. A store that fails (Redis away)
costs the request nothing: it goes on uncached.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from router.cache.entry import CachedAnswer, Record
from router.cache.guard import semantic_mismatch
from router.cache.keys import CacheKey, cache_key, not_cacheable
from router.cache.stores import CacheStore
from router.config import CacheConfig
from router.types import Completion, Decision, RequestContext


@dataclass(frozen=True, slots=True)
class CacheLookup:
    status: str
    """`hit-exact`, `hit-semantic`, `miss` or `bypass`: what x-router-cache says."""
    answer: CachedAnswer | None = None
    similarity: float | None = None
    key: CacheKey | None = None
    vector: Any = None
    store: bool = False
    """Whether the fresh answer to this request may be stored."""
    ttl_s: int = 0


BYPASS = CacheLookup("bypass")


def _directives(ctx: RequestContext) -> set[str]:
    return {part.strip().lower() for part in ctx.headers.get("cache-control", "").split(",") if part.strip()}


class ResponseCache:
    def __init__(self, store: CacheStore, config: CacheConfig, can_embed: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self._config = config
        self._can_embed = can_embed
        """False while questions cannot be embedded (no embedder, or it could not load): exact matching only."""
        self.lookups: Counter[str] = Counter()
        """Lookups on this replica by result (`hit-exact`, `hit-semantic`, `miss`, `bypass`)."""

    def _plan(self, ctx: RequestContext, decision: Decision) -> tuple[CacheKey, set[str]] | None:
        if not_cacheable(ctx, decision.cache) is not None:
            return None
        directives = _directives(ctx)
        if {"no-cache", "no-store"} <= directives:
            return None
        return cache_key(ctx, decision, self._config.scope), directives

    async def lookup(
        self, ctx: RequestContext, decision: Decision, embed: Callable[[], Awaitable[Any]] | None = None
    ) -> CacheLookup:
        """Exact first; on an exact miss, `embed()` (the question's vector, computed at most once per request
        and only when a semantic lookup or store will use it) and the semantic index."""
        result = await self._lookup(ctx, decision, embed)
        self.lookups[result.status] += 1
        return result

    async def _lookup(
        self, ctx: RequestContext, decision: Decision, embed: Callable[[], Awaitable[Any]] | None
    ) -> CacheLookup:
        plan = self._plan(ctx, decision)
        if plan is None:
            return BYPASS
        key, directives = plan
        store = "no-store" not in directives
        ttl = decision.cache.ttl_s
        if "no-cache" not in directives and (record := await self.store.get(key.exact)) is not None:
            return CacheLookup("hit-exact", record.answer, 1.0, key)
        semantic = decision.cache.semantic and key.question is not None and self.semantic_available
        vector = await embed() if semantic and embed is not None else None
        if "no-cache" in directives:
            return CacheLookup("bypass", key=key, vector=vector, store=store, ttl_s=ttl)
        if vector is not None:
            match = self.store.search(key.partition, vector, decision.cache.semantic_threshold)
            if match is not None and match.key.startswith(f"{key.scope}:"):
                record = await self.store.get(match.key)
                if (
                    record is not None
                    and record.partition == key.partition
                    and semantic_mismatch(key.question or "", record.question or "") is None
                ):
                    return CacheLookup("hit-semantic", record.answer, match.similarity, key)
        return CacheLookup("miss", key=key, vector=vector, store=store, ttl_s=ttl)

    async def keep(self, lookup: CacheLookup, completion: Completion, served_by: str) -> bool:
        """Keep a complete answer for next time; False when it is not one to keep."""
        if not lookup.store or lookup.key is None or completion.finish_reason not in ("stop", "length", "tool_calls"):
            return False
        answer = CachedAnswer.of(completion, served_by)
        record = Record(answer, lookup.key.partition, lookup.vector, time.time() + lookup.ttl_s, lookup.key.question)
        raw = record.dumps()  # once: for the size check and for the store
        if len(raw) > self._config.max_answer_bytes:
            return False
        await self.store.put(lookup.key.exact, record, lookup.ttl_s, raw)
        return True

    @property
    def semantic_available(self) -> bool:
        return self._config.semantic and self._can_embed()

    async def clear(self, scope: str | None = None) -> int:
        return await self.store.clear(scope)

    def stats(self) -> dict[str, Any]:
        entries, size = self.store.totals()
        return {
            **self.store.describe(),
            "semantic": self.semantic_available,
            "scope": self._config.scope,
            "entries": entries,
            "bytes": size,
            "lookups": {status: self.lookups[status] for status in ("hit-exact", "hit-semantic", "miss", "bypass")},
        }
