"""The circuit breaker's state machine, on the memory store and on a real Redis, and Redis going away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.config import BreakerPolicy
from router.redis_client import RedisGuard, connect
from router.resilience import CircuitBreaker, MemoryBreakerStore, RedisBreakerStore
from router.resilience.breaker import BreakerStore
from tests.conftest import redis_url_for
from tests.servers import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BreakerStore]:
    if request.param == "memory":
        yield MemoryBreakerStore()
        return
    guard = RedisGuard(connect(redis_url_for(request, request.param)))
    await guard.client.flushdb()
    yield RedisBreakerStore(guard, prefix=f"test-{request.node.name}")
    await guard.close()


def breaker(store: BreakerStore, clock: Clock, **policy: object) -> CircuitBreaker:
    defaults = {"consecutive_failures": 3, "cooldown_s": 10, "min_calls": 100}
    return CircuitBreaker("m", BreakerPolicy(**{**defaults, **policy}), store, probe_ttl_s=5, clock=clock)


async def test_consecutive_failures_open_the_circuit(store: BreakerStore) -> None:
    clock = Clock()
    b = breaker(store, clock)
    for _ in range(2):
        assert await b.allow()
        await b.failure()
    assert b.state == "closed"
    await b.failure()
    assert b.state == "open"
    assert not await b.allow()


async def test_a_success_breaks_the_run_of_failures(store: BreakerStore) -> None:
    b = breaker(store, Clock())
    await b.failure()
    await b.failure()
    await b.success()
    await b.failure()
    await b.failure()
    assert b.state == "closed" and await b.allow()


async def test_a_high_failure_rate_opens_the_circuit(store: BreakerStore) -> None:
    b = breaker(store, Clock(), consecutive_failures=100, failure_rate=0.5, window=10, min_calls=10)
    for _ in range(5):
        await b.success()
        await b.failure()
    assert b.state == "open"


async def test_after_the_cooldown_exactly_one_probe_goes_through(store: BreakerStore) -> None:
    clock = Clock()
    first, second = breaker(store, clock), breaker(store, clock)  # two replicas sharing the store
    for _ in range(3):
        await first.failure()
    clock.now += 10.5
    assert await first.allow()
    assert first.state == "half_open"
    assert not await second.allow()  # the probe is taken


async def test_a_successful_probe_closes_and_a_failed_one_reopens(store: BreakerStore) -> None:
    clock = Clock()
    b = breaker(store, clock)
    for _ in range(3):
        await b.failure()
    clock.now += 11
    assert await b.allow()
    await b.failure()
    assert b.state == "open" and not await b.allow()
    clock.now += 11
    assert await b.allow()
    await b.success()
    assert b.state == "closed"
    assert await b.allow() and await b.allow()


async def test_a_circuit_opened_by_one_replica_is_open_for_another(redis_server: RedisServer) -> None:
    guards = [RedisGuard(connect(redis_server.url)) for _ in range(2)]
    clock = Clock()
    one, other = (breaker(RedisBreakerStore(g, prefix="shared"), clock) for g in guards)
    await guards[0].client.flushdb()
    for _ in range(3):
        await one.failure()
    assert not await other.allow()
    assert other.state == "open"
    for g in guards:
        await g.close()


async def test_redis_going_away_degrades_to_local_state_and_recovers(tmp_path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    errors: list[str] = []
    guard = RedisGuard(connect(server.url), retry_after_s=0.0, on_error=errors.append)
    clock = Clock()
    b = breaker(RedisBreakerStore(guard, prefix="outage"), clock)
    try:
        await b.failure()
        server.stop()
        # Redis is gone: no call raises, and the breaker still works on this replica's own state.
        await b.failure()
        await b.failure()
        assert errors
        assert b.state == "open"
        assert not await b.allow()
        server.start()
        # Redis is back (empty, it keeps nothing on disk): the shared state is used again.
        await guard.client.set("outage:breaker:{m}:open_until", repr(clock.now + 100))
        clock.now += 50
        assert not await b.allow()
        await guard.client.delete("outage:breaker:{m}:open_until")
        assert await b.allow()
    finally:
        await guard.close()
        server.stop()
