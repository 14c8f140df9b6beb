"""Circuit breakers, one per backend: closed → open → half-open → closed.

Why our own and not a library: purgatory (asyncio, Redis-backed) is the closest fit, but it opens
on consecutive failures only (no failure rate), does a Redis round trip on every call with no way to
keep working when Redis goes away, and its Redis state is per-breaker JSON without an atomic probe
claim. The state machine is small; the part that matters, sharing it across replicas and surviving a
Redis outage, is what we have to own anyway.

Shared state lives behind `BreakerStore`: whether the circuit is open (and until when), the count of
consecutive failures, and the claim of the single half-open probe. `MemoryBreakerStore` serves one
process; `RedisBreakerStore` shares it across replicas (atomic INCR, SET NX PX for the probe) and
falls back to its own memory store while Redis is down. The failure *rate* is judged per replica, on
its own recent calls: cheap, and a rate is meaningful per replica too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol

from router.config import BreakerPolicy
from router.redis_client import RedisGuard

log = logging.getLogger(__name__)
State = Literal["closed", "open", "half_open"]


class BreakerStore(Protocol):
    async def open_until(self, name: str) -> float | None:
        """Wall-clock time until which the circuit is open; None when closed."""

    async def add_failure(self, name: str) -> int:
        """Count one more consecutive failure; return the count."""

    async def reset(self, name: str) -> None:
        """Close the circuit and clear the failure count."""

    async def trip(self, name: str, until: float) -> None:
        """Open the circuit until the given wall-clock time."""

    async def claim_probe(self, name: str, ttl_s: float) -> bool:
        """True for exactly one caller per `ttl_s` once the cool-down has passed (the half-open probe)."""


class MemoryBreakerStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._open_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._probe_until: dict[str, float] = {}

    async def open_until(self, name: str) -> float | None:
        return self._open_until.get(name)

    async def add_failure(self, name: str) -> int:
        self._failures[name] = self._failures.get(name, 0) + 1
        return self._failures[name]

    async def reset(self, name: str) -> None:
        self._open_until.pop(name, None)
        self._failures.pop(name, None)
        self._probe_until.pop(name, None)

    async def trip(self, name: str, until: float) -> None:
        self._open_until[name] = until
        self._probe_until.pop(name, None)

    async def claim_probe(self, name: str, ttl_s: float) -> bool:
        now = self._clock()
        if self._probe_until.get(name, 0.0) > now:
            return False
        self._probe_until[name] = now + ttl_s
        return True


class RedisBreakerStore:
    """Breaker state shared by every replica through Redis; in-process while Redis is unreachable."""

    def __init__(self, guard: RedisGuard, prefix: str = "router") -> None:
        self._guard = guard
        self._prefix = prefix
        self._local = MemoryBreakerStore()

    def _key(self, name: str, part: str) -> str:
        # One hash tag per breaker: its keys share a Redis Cluster slot, so the multi-key DEL and the
        # open-and-clear-probe transaction are legal there; different breakers still spread over slots.
        return f"{self._prefix}:breaker:{{{name}}}:{part}"

    async def open_until(self, name: str) -> float | None:
        async def call(r: Any) -> float | None:
            value = await r.get(self._key(name, "open_until"))
            return float(value) if value is not None else None

        return await self._guard.run("breaker", call, lambda: self._local.open_until(name))

    async def add_failure(self, name: str) -> int:
        async def call(r: Any) -> int:
            key = self._key(name, "failures")
            async with r.pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(key).expire(key, 3600).execute()
            return int(count)

        # Written through to the local store too, so that a Redis outage continues from what this
        # replica knew instead of from zero.
        local_count = await self._local.add_failure(name)

        async def fallback() -> int:
            return local_count

        return await self._guard.run("breaker", call, fallback)

    async def reset(self, name: str) -> None:
        async def call(r: Any) -> None:
            await r.delete(self._key(name, "open_until"), self._key(name, "failures"), self._key(name, "probe"))

        await self._local.reset(name)
        await self._guard.run("breaker", call, lambda: self._local.reset(name))

    async def trip(self, name: str, until: float) -> None:
        async def call(r: Any) -> None:
            # The key outlives the cool-down so that half-open is still "opened" state, not "closed".
            ttl_ms = int(max(1.0, until - time.time() + 3600) * 1000)
            async with r.pipeline(transaction=True) as pipe:
                await (
                    pipe.set(self._key(name, "open_until"), repr(until), px=ttl_ms)
                    .delete(self._key(name, "probe"))
                    .execute()
                )

        await self._local.trip(name, until)
        await self._guard.run("breaker", call, lambda: self._local.trip(name, until))

    async def claim_probe(self, name: str, ttl_s: float) -> bool:
        async def call(r: Any) -> bool:
            return bool(await r.set(self._key(name, "probe"), "1", nx=True, px=int(ttl_s * 1000)))

        return await self._guard.run("breaker", call, lambda: self._local.claim_probe(name, ttl_s))


Transition = Callable[[str, State], None]


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        store: BreakerStore,
        probe_ttl_s: float,
        on_transition: Transition | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._clock = clock
        self._policy = policy
        self._store = store
        self._probe_ttl_s = probe_ttl_s
        self._recent: deque[bool] = deque(maxlen=policy.window)
        self._on_transition = on_transition
        self.state: State = "closed"
        self._failed_since_reset = False

    def _set(self, state: State) -> None:
        if state != self.state:
            log.warning("circuit %s: %s -> %s", self.name, self.state, state)
            self.state = state
            if self._on_transition is not None:
                self._on_transition(self.name, state)

    async def allow(self) -> bool:
        """May a call go to this backend now? False while open; one probe call once it is half-open."""
        if not self._policy.enabled:
            return True
        open_until = await self._store.open_until(self.name)
        if open_until is None:
            self._set("closed")
            return True
        if self._clock() < open_until:
            self._set("open")
            return False
        if await self._store.claim_probe(self.name, self._probe_ttl_s):
            self._set("half_open")
            return True
        return False

    async def success(self) -> None:
        if not self._policy.enabled:
            return
        self._recent.append(True)
        # Consecutive means consecutive: a success breaks the run. Only a replica that saw failures (or
        # an open circuit) pays the write; a healthy backend costs one read per call, not two.
        if self.state != "closed" or self._failed_since_reset:
            await self._store.reset(self.name)
            self._failed_since_reset = False
            self._set("closed")

    async def failure(self) -> None:
        if not self._policy.enabled:
            return
        self._recent.append(False)
        self._failed_since_reset = True
        consecutive = await self._store.add_failure(self.name)
        failed = self._recent.count(False)
        rate_tripped = (
            len(self._recent) >= self._policy.min_calls and failed / len(self._recent) >= self._policy.failure_rate
        )
        if self.state == "half_open" or consecutive >= self._policy.consecutive_failures or rate_tripped:
            await self._store.trip(self.name, self._clock() + self._policy.cooldown_s)
            self._recent.clear()
            self._set("open")
