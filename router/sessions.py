"""Sticky sessions: once a conversation has been answered by the cloud, its later turns stay there.

A policy asks for it with `session: sticky` on a rule or its default. A conversation is known by the
client's `x-session-id` header, or else by a hash of what it has said so far (its system prompt and
user messages, not the answers, which differ by model): a request's *before* key hashes every user
message but the last, so it equals the *after* key of the turn before it. When a cloud model answers,
the after key is kept (TTL `sessions.ttl_s`, per tenant), in Redis when configured so every replica
sees it; a later turn whose rule is sticky finds its before key and goes to the cloud too, with reason
`sticky-session`. A local model answering "step 2" of a proof the cloud started is what this avoids.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from router.redis_client import RedisGuard
from router.types import RequestContext, Served, content_text

log = logging.getLogger(__name__)
SESSION_HEADER = "x-session-id"


def session_keys(ctx: RequestContext) -> tuple[str, str]:
    """(before, after): the conversation as it stood before this turn, and with this turn."""
    scope = ctx.tenant or "-"
    if (given := ctx.headers.get(SESSION_HEADER)) is not None:
        key = f"{scope}:id:{hashlib.sha256(given.encode()).hexdigest()[:32]}"
        return key, key
    said = [
        f"{m.get('role')}:{content_text(m.get('content'))}"
        for m in ctx.messages
        if m.get("role") in ("system", "developer", "user")
    ]
    users = [i for i, m in enumerate(ctx.messages) if m.get("role") == "user"]
    before = said[:-1] if users else said

    def digest(parts: list[str]) -> str:
        return f"{scope}:h:{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}"

    return digest(before), digest(said)


class SessionStore(Protocol):
    async def escalated(self, key: str) -> bool: ...
    async def escalate(self, key: str, ttl_s: int) -> None: ...


class MemorySessionStore:
    def __init__(self, max_sessions: int = 100_000) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._max = max_sessions

    async def escalated(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None or until < time.monotonic():
            self._until.pop(key, None)
            return False
        return True

    async def escalate(self, key: str, ttl_s: int) -> None:
        self._until[key] = time.monotonic() + ttl_s
        self._until.move_to_end(key)
        while len(self._until) > self._max:
            self._until.popitem(last=False)


class RedisSessionStore:
    """Shared by replicas; one key per conversation, expiring on its own. While Redis is away, this
    replica remembers in its own memory, like the other shared state."""

    def __init__(self, redis: RedisGuard, prefix: str = "hr:session") -> None:
        self._redis = redis
        self._prefix = prefix
        self._local = MemorySessionStore()

    async def escalated(self, key: str) -> bool:
        async def shared(client: Any) -> bool:
            return bool(await client.exists(f"{self._prefix}:{key}"))

        return await self._redis.run("session lookup", shared, lambda: self._local.escalated(key))

    async def escalate(self, key: str, ttl_s: int) -> None:
        async def shared(client: Any) -> None:
            await client.set(f"{self._prefix}:{key}", 1, ex=ttl_s)

        await self._local.escalate(key, ttl_s)
        await self._redis.run("session store", shared, _nothing)


async def _nothing() -> None:
    return None


class Sessions:
    def __init__(self, store: SessionStore, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def escalated_before(self, ctx: RequestContext) -> bool:
        """Whether an earlier turn of this conversation was answered by the cloud."""
        before, _ = session_keys(ctx)
        return await self.store.escalated(before)

    async def remember(self, ctx: RequestContext, served: Served) -> None:
        """Mark the conversation when a cloud model answered it under a policy with sticky sessions."""
        if served.route != "cloud" or not served.decision.remember_session:
            return
        try:
            await self.store.escalate(session_keys(ctx)[1], self.ttl_s)
        except Exception:  # the answer is out; stickiness is best effort
            log.exception("request %s: could not remember its session", ctx.request_id)
