"""Where cached answers live: in this process (the embedded default) or in Redis (shared by replicas).

Both stores keep the semantic index in the gateway process (`VectorIndex`), so the semantic cache works
on any Redis, modules or not. The Redis store keeps every replica's index and catalogue in step through
one Redis stream of inserts, deletions and clears; a replica that starts, or comes back after Redis went
away, rebuilds both from the records themselves. Redis stays the truth: an index entry whose record has
expired or been evicted is dropped the first time a lookup finds it gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from router.cache.entry import Record, decode_vector, encode_vector
from router.cache.index import Match, VectorIndex
from router.redis_client import REDIS_ERRORS, RedisGuard

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Known:
    size: int
    expires_at: float


class Catalogue:
    """Which entries exist, how big and until when: answers `entries` and `bytes` without asking the store."""

    def __init__(self) -> None:
        self.index = VectorIndex()
        self._known: dict[str, _Known] = {}

    def __len__(self) -> int:
        return len(self._known)

    def add(self, key: str, partition: str, size: int, expires_at: float, vector: Any = None) -> None:
        self._known[key] = _Known(size, expires_at)
        if vector is not None:
            self.index.add(key, partition, vector, expires_at)
        else:
            self.index.remove(key)

    def remove(self, key: str) -> None:
        self._known.pop(key, None)
        self.index.remove(key)

    def clear(self, scope: str | None = None) -> None:
        if scope is None:
            self._known.clear()
            self.index.clear()
            return
        prefix = f"{scope}:"
        for key in [k for k in self._known if k.startswith(prefix)]:
            self.remove(key)

    def totals(self) -> tuple[int, int]:
        now = time.time()
        for key in [k for k, known in self._known.items() if known.expires_at <= now]:
            self.remove(key)
        return len(self._known), sum(known.size for known in self._known.values())


class CacheStore(Protocol):
    kind: str

    async def get(self, key: str) -> Record | None: ...
    async def put(self, key: str, record: Record, ttl_s: int, raw: str | None = None) -> None:
        """Store `record` (`raw`: its JSON, when the caller has it already)."""

    async def clear(self, scope: str | None = None) -> int: ...
    def search(self, partition: str, vector: Any, threshold: float) -> Match | None: ...
    def totals(self) -> tuple[int, int]: ...
    def describe(self) -> dict[str, Any]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


class MemoryCacheStore:
    """One process's cache: least recently used entries go first past `max_entries` or `max_bytes`."""

    kind = "memory"

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key → (record JSON, expires_at)
        self._bytes = 0
        self._catalogue = Catalogue()

    async def get(self, key: str) -> Record | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[1] <= time.time():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return Record.loads(found[0])

    async def put(self, key: str, record: Record, ttl_s: int, raw: str | None = None) -> None:
        raw = raw or record.dumps()
        if key in self._entries:
            self._drop(key)
        expires_at = time.time() + ttl_s
        self._entries[key] = (raw, expires_at)
        self._bytes += len(raw)
        self._catalogue.add(key, record.partition, len(raw), expires_at, record.vector)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        raw, _ = self._entries.pop(key)
        self._bytes -= len(raw)
        self._catalogue.remove(key)

    async def clear(self, scope: str | None = None) -> int:
        doomed = [k for k in self._entries if scope is None or k.startswith(f"{scope}:")]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def search(self, partition: str, vector: Any, threshold: float) -> Match | None:
        return self._catalogue.index.search(partition, vector, threshold)

    def totals(self) -> tuple[int, int]:
        return self._catalogue.totals()

    def describe(self) -> dict[str, Any]:
        return {"store": "memory", "semantic_index": "gateway"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisCacheStore:
    """Records in Redis (`hr:cache:r:<scope>:<hash>`, with a TTL); every replica's index follows one stream."""

    kind = "redis"
    PREFIX = "hr:cache:r:"
    EVENTS = "hr:cache:events"
    EVENTS_KEPT = 100_000
    """Stream length kept (approximately); replicas read it every `poll_ms`, so they never fall that far behind."""

    def __init__(self, guard: RedisGuard, poll_ms: int = 200) -> None:
        self._guard = guard
        self._poll_ms = poll_ms
        self._catalogue = Catalogue()
        self._last_event = "0-0"
        self._follower: asyncio.Task[None] | None = None
        self.query_engine = False
        self.synced = asyncio.Event()
        self._closing = False

    @staticmethod
    async def _none() -> Any:
        """What a store call answers while Redis is away: a miss, or a write that did not happen."""
        return None

    async def get(self, key: str) -> Record | None:
        raw = await self._guard.run("cache", lambda r: r.get(self.PREFIX + key), self._none)
        if raw is None:
            if self._guard.available:
                self._catalogue.remove(key)  # expired or evicted by Redis: stop offering it
            return None
        return Record.loads(raw)

    async def put(self, key: str, record: Record, ttl_s: int, raw: str | None = None) -> None:
        raw = raw or record.dumps()
        event = {"op": "add", "key": key, "p": record.partition, "size": len(raw), "exp": record.expires_at}
        if record.vector is not None:
            event["v"] = encode_vector(record.vector)

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(self.PREFIX + key, raw, px=ttl_s * 1000)
                pipe.xadd(self.EVENTS, event, maxlen=self.EVENTS_KEPT, approximate=True)
                await pipe.execute()
            # This replica sees its own insert now; the stream brings it again later (idempotent).
            self._catalogue.add(key, record.partition, len(raw), record.expires_at, record.vector)

        await self._guard.run("cache", write, self._none)

    async def clear(self, scope: str | None = None) -> int:
        async def unlink(r: Any) -> int:
            pattern = self.PREFIX + (f"{scope}:*" if scope else "*")
            removed = 0
            batch: list[str] = []
            async for name in r.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    removed += await r.unlink(*batch)
                    batch = []
            if batch:
                removed += await r.unlink(*batch)
            await r.xadd(self.EVENTS, {"op": "clear", "scope": scope or ""}, maxlen=self.EVENTS_KEPT, approximate=True)
            return removed

        removed = await unlink(self._guard.client)  # an operator's command: errors are reported, not hidden
        self._catalogue.clear(scope)
        return removed

    def search(self, partition: str, vector: Any, threshold: float) -> Match | None:
        return self._catalogue.index.search(partition, vector, threshold)

    def totals(self) -> tuple[int, int]:
        return self._catalogue.totals()

    def describe(self) -> dict[str, Any]:
        return {
            "store": "redis",
            "semantic_index": "gateway",
            "redis_query_engine": self.query_engine,
            "synced": self.synced.is_set(),
        }

    async def start(self) -> None:
        self._follower = asyncio.create_task(self._follow(), name="cache-follower")

    async def close(self) -> None:
        self._closing = True
        if self._follower is not None:
            self._follower.cancel()
            # A cancel that lands as a Redis timeout fires is turned into TimeoutError by the client's
            # timeout handling; the flag ends the loop then, and the wait is bounded either way.
            await asyncio.wait([self._follower], timeout=2.0)

    async def _detect_query_engine(self, r: Any) -> None:
        try:
            await r.execute_command("FT._LIST")
            self.query_engine = True
        except REDIS_ERRORS:
            self.query_engine = False
        log.info(
            "cache: Redis %s the query engine (FT.*); the semantic index is kept in the gateway%s",
            "has" if self.query_engine else "has no",
            " (the FT.* index is not used yet)" if self.query_engine else "",
        )

    async def _rebuild(self, r: Any) -> None:
        """Read every record into a fresh catalogue; events after the stream's current end are replayed."""
        newest = await r.xrevrange(self.EVENTS, count=1)
        catalogue = Catalogue()
        names: list[str] = []

        async def load(batch: list[str]) -> None:
            for name, raw in zip(batch, await r.mget(batch), strict=True):
                if raw is not None:
                    record = Record.loads(raw)
                    key = name[len(self.PREFIX) :]
                    catalogue.add(key, record.partition, len(raw), record.expires_at, record.vector)

        async for name in r.scan_iter(match=self.PREFIX + "*", count=1000):
            names.append(name)
            if len(names) >= 500:
                await load(names)
                names = []
        if names:
            await load(names)
        self._catalogue = catalogue
        self._last_event = newest[0][0] if newest else "0-0"
        self.synced.set()
        log.info("cache: %d entries indexed from Redis", len(catalogue))

    def _apply(self, fields: dict[str, str]) -> None:
        op = fields.get("op")
        if op == "add":
            vector = decode_vector(fields["v"]) if fields.get("v") else None
            self._catalogue.add(fields["key"], fields["p"], int(fields["size"]), float(fields["exp"]), vector)
        elif op == "clear":
            self._catalogue.clear(fields.get("scope") or None)

    async def _follow(self) -> None:
        """Keep this replica's catalogue in step with the others; rebuild after any gap in what it saw."""
        client = self._guard.client
        stale = True
        while not self._closing:
            try:
                if stale:
                    if not self.query_engine:
                        await self._detect_query_engine(client)
                    await self._rebuild(client)
                    stale = False
                replies = await client.xread({self.EVENTS: self._last_event}, count=1000, block=self._poll_ms)
                for _stream, events in replies or []:
                    for event_id, fields in events:
                        self._apply(fields)
                        self._last_event = event_id
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                if not stale:
                    log.warning("cache: lost Redis (%s); uncached until it is back, then the index is rebuilt", exc)
                stale = True
                self.synced.clear()
                await asyncio.sleep(1.0)
