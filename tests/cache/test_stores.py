"""The cache stores: the same cases on the memory store and on a real Redis; replicas sharing one Redis
see each other's entries (exact and semantic); Redis going away costs nothing but the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from router.cache import CachedAnswer, MemoryCacheStore, Record, RedisCacheStore
from router.redis_client import RedisGuard, connect
from router.types import Usage
from tests.conftest import redis_url_for
from tests.servers import RedisServer


def record(text: str, partition: str = "p", vector: np.ndarray | None = None, ttl_s: float = 60) -> Record:
    import time

    answer = CachedAnswer(text, "stop", Usage(3, 4), "upstream-model", "gemma")
    return Record(answer, partition, vector, time.time() + ttl_s, question=f"question for {text}")


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


async def redis_store(url: str) -> RedisCacheStore:
    store = RedisCacheStore(RedisGuard(connect(url)), poll_ms=50)
    await store.start()
    await asyncio.wait_for(store.synced.wait(), 10)
    return store


async def eventually(check, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryCacheStore(max_entries=100, max_bytes=1 << 20)
        return
    s = await redis_store(redis_url_for(request, request.param))
    await s.clear()
    yield s
    await s.clear()
    await s.close()
    await s._guard.close()


async def test_an_answer_put_is_got_back_whole(store) -> None:
    v = unit(1)
    await store.put("t-a:k1", record("hello", vector=v), ttl_s=60)
    got = await store.get("t-a:k1")
    assert got.answer.content == "hello" and got.answer.usage == Usage(3, 4) and got.answer.served_by == "gemma"
    assert np.allclose(got.vector, v) and got.question == "question for hello"
    assert await store.get("t-a:missing") is None
    assert store.totals()[0] == 1 and store.totals()[1] > 0


async def test_semantic_search_stays_within_the_partition(store) -> None:
    await store.put("t-a:k1", record("one", "p1", unit(1)), ttl_s=60)
    await store.put("t-a:k2", record("two", "p2", unit(2)), ttl_s=60)
    assert store.search("p1", unit(1), 0.9).key == "t-a:k1"
    assert store.search("p1", unit(2), 0.9) is None
    assert store.search("p2", unit(2), 0.9).key == "t-a:k2"


async def test_entries_expire(store) -> None:
    await store.put("t-a:k1", record("short", vector=unit(1), ttl_s=1), ttl_s=1)
    assert await store.get("t-a:k1") is not None
    await asyncio.sleep(1.2)
    assert await store.get("t-a:k1") is None
    assert store.search("p", unit(1), 0.9) is None
    assert store.totals() == (0, 0)


async def test_clear_one_scope_keeps_the_others(store) -> None:
    await store.put("t-a:k1", record("a", vector=unit(1)), ttl_s=60)
    await store.put("t-b:k1", record("b", vector=unit(2)), ttl_s=60)
    assert await store.clear("t-a") == 1
    assert await store.get("t-a:k1") is None and store.search("p", unit(1), 0.9) is None
    assert (await store.get("t-b:k1")).answer.content == "b"
    assert await store.clear() == 1 and store.totals() == (0, 0)


async def test_memory_store_drops_least_recently_used_past_its_bounds() -> None:
    store = MemoryCacheStore(max_entries=2, max_bytes=1 << 20)
    for name in ("a", "b"):
        await store.put(name, record(name, vector=unit(ord(name))), ttl_s=60)
    await store.get("a")  # a is now the most recently used
    await store.put("c", record("c"), ttl_s=60)
    assert await store.get("b") is None and store.search("p", unit(ord("b")), 0.9) is None
    assert await store.get("a") is not None and await store.get("c") is not None
    small = MemoryCacheStore(max_entries=100, max_bytes=len(record("x").dumps()) * 2 + 10)
    for name in ("x", "y", "z"):
        await small.put(name, record(name), ttl_s=60)
    assert await small.get("x") is None and small.totals()[0] == 2


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_replicas_on_one_redis_see_each_others_entries(request: pytest.FixtureRequest, kind: str) -> None:
    url = redis_url_for(request, kind)
    a = await redis_store(url)
    await a.clear()
    await a.put("t-a:before", record("before", vector=unit(1)), ttl_s=60)
    b = await redis_store(url)  # starts after: rebuilds from the records
    assert b.search("p", unit(1), 0.9).key == "t-a:before"
    await a.put("t-a:after", record("after", vector=unit(2)), ttl_s=60)  # arrives through the stream
    await eventually(lambda: b.search("p", unit(2), 0.9) is not None)
    assert (await b.get("t-a:after")).answer.content == "after"
    await b.clear("t-a")
    await eventually(lambda: a.totals() == (0, 0))
    for s in (a, b):
        await s.close()
        await s._guard.close()


async def test_redis_going_away_costs_the_cache_only_and_it_comes_back(redis_server: RedisServer) -> None:
    store = await redis_store(redis_server.url)
    await store.put("t-a:k", record("kept", vector=unit(1)), ttl_s=60)
    redis_server.stop()
    try:
        assert await store.get("t-a:k") is None  # a miss, not an error
        await store.put("t-a:k2", record("lost"), ttl_s=60)  # dropped, not raised
        await eventually(lambda: not store.synced.is_set())
    finally:
        redis_server.start()  # an empty server: what was cached is gone
    await asyncio.wait_for(store.synced.wait(), 15)
    assert store.search("p", unit(1), 0.9) is None  # the index was rebuilt from the new server
    await eventually(lambda: store._guard.available, 5)
    await store.put("t-a:k3", record("again", vector=unit(3)), ttl_s=60)
    assert (await store.get("t-a:k3")).answer.content == "again"
    await store.close()
    await store._guard.close()
