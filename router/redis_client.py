"""One way to reach Redis for every shared store, and one rule for when it goes away.

Stores that keep shared state in Redis (breakers now; cache, ledger and budgets later) must never
turn a Redis outage into failed requests. `RedisGuard` gives them fail-fast calls (short socket
timeouts) and remembers an outage for a moment, so that while Redis is down each store answers from its
in-process fallback at once instead of paying a timeout per request; it tries Redis again after
`retry_after_s`, so the shared state comes back by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when the server is away, slow or refusing."""


def connect(url: str, timeout_s: float = 0.5) -> Any:
    """An asyncio Redis client (redis-py) with a pool and short timeouts; cluster URLs are not special-cased yet."""
    import redis.asyncio as redis

    return redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=True,
    )


class RedisGuard:
    def __init__(self, client: Any, retry_after_s: float = 2.0, on_error: Callable[[str], None] | None = None) -> None:
        self.client = client
        self._retry_after_s = retry_after_s
        self._down_until = 0.0
        self._on_error = on_error

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def run(self, what: str, call: Callable[[Any], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        """Run `call(client)`; on any Redis error (or while Redis is known down) run `fallback()` instead."""
        if self.available:
            try:
                return await call(self.client)
            except REDIS_ERRORS as exc:
                # One line per outage window (not per request): the next try is `retry_after_s` away.
                self._down_until = time.monotonic() + self._retry_after_s
                log.warning("redis unavailable during %s (%s); using in-process state meanwhile", what, exc)
                if self._on_error is not None:
                    self._on_error(what)
        return await fallback()

    async def close(self) -> None:
        await self.client.aclose()
