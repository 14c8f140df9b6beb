"""One way to reach Redis for every shared store, and one rule for when it goes away.

Stores that keep shared state in Redis (breakers, cache, ledger, budgets and rate limits) must never
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
    """An asyncio Redis client (redis-py) with a pool and short timeouts, for three kinds of URL:

    - `redis://` / `rediss://` / `unix://`: one server (or a managed endpoint);
    - `redis+sentinel://[:password@]host:26379[,host2:26379]/<master-name>[/<db>]`: the master that
      Sentinel names, found again after a failover;
    - `redis+cluster://[:password@]host:6379[,host2:6379]`: a Redis Cluster (keys spread over slots; the
      limits' Lua script keeps its keys in one slot with a hash tag).
    """
    import redis.asyncio as redis

    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": True,
    }
    scheme, _, rest = url.partition("://")
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel_master(rest, scheme.startswith("rediss"), options)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        password, hosts, _ = _split(rest, default_port=6379)
        nodes = [ClusterNode(host, port) for host, port in hosts]
        return RedisCluster(startup_nodes=nodes, password=password, ssl=scheme.startswith("rediss"), **options)
    return redis.from_url(url, health_check_interval=15, **options)


def _split(rest: str, default_port: int = 26379) -> tuple[str | None, list[tuple[str, int]], list[str]]:
    """`[:password@]h1:p1,h2:p2/path/parts` → (password, [(host, port)...], [path parts])."""
    auth, _, hosts_and_path = rest.rpartition("@")
    password = auth.partition(":")[2] or None if auth else None
    hosts, _, path = hosts_and_path.partition("/")
    pairs = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        pairs.append((host, int(port) if port else default_port))
    return password, pairs, [p for p in path.split("/") if p]


def _sentinel_master(rest: str, ssl: bool, options: dict[str, Any]) -> Any:
    from redis.asyncio.sentinel import Sentinel

    password, hosts, path = _split(rest)
    if not path:
        raise ValueError("a redis+sentinel:// URL needs the master's name: redis+sentinel://host:26379/mymaster/0")
    db = int(path[1]) if len(path) > 1 else 0
    sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": options["socket_timeout"]}, ssl=ssl, **options)
    return sentinel.master_for(path[0], db=db, password=password)


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
