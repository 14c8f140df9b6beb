"""Rate limits slide: in no 60-second span are more requests (or tokens) admitted than the limit, in
memory and on a real Redis alike, and a refusal says exactly when the next request fits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.limits.stores import WINDOW_S, LimitStore, MemoryLimitStore, Quota, RedisLimitStore
from router.redis_client import RedisGuard, connect
from tests.conftest import redis_url_for

T = TypeVar("T")
T0 = 1_800_000_000.0  # a fixed start: the property is about gaps, not the wall clock


async def with_store(kind: str, url: str, work: Callable[[LimitStore], Awaitable[T]]) -> T:
    """Run `work` on a fresh store of `kind`: in memory, or on the real Redis (a client per event loop)."""
    if kind == "memory":
        return await work(MemoryLimitStore())
    guard = RedisGuard(connect(url))
    try:
        return await work(RedisLimitStore(guard))
    finally:
        await guard.close()


def store_url(request: pytest.FixtureRequest, kind: str) -> str:
    return "" if kind == "memory" else redis_url_for(request, kind)


def replay(kind: str, url: str, gaps: list[float], rpm: int, tpm: int | None, tokens: int) -> list:
    subject = f"prop-{next(_subjects)}"

    async def run(store: LimitStore) -> list:
        at, outcomes = T0, []
        for gap in gaps:
            at += gap
            outcomes.append((at, await store.admit([Quota(subject, rpm, tpm)], tokens, at)))
        return outcomes

    return asyncio.run(with_store(kind, url, run))


def max_in_any_window(times: list[float]) -> int:
    """The most admitted times in any half-open span (t - 60, t]."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - WINDOW_S:
            start += 1
        best = max(best, end - start + 1)
    return best


gaps = st.lists(
    st.floats(min_value=0, max_value=30, allow_nan=False).map(lambda g: round(g, 3)), min_size=1, max_size=80
)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
_subjects = iter(range(10**9))


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
@PROPERTY
@given(gaps=gaps, rpm=st.integers(min_value=1, max_value=8))
def test_no_60_seconds_admit_more_requests_than_the_limit(request: pytest.FixtureRequest, kind: str, gaps, rpm) -> None:
    outcomes = replay(kind, store_url(request, kind), gaps, rpm, None, 1)
    admitted = [at for at, a in outcomes if a.admitted]
    assert max_in_any_window(admitted) <= rpm
    before: list[float] = []
    for at, a in outcomes:
        in_window = sorted(t for t in before if t > at - WINDOW_S)
        if a.admitted:  # admitted only when there was room...
            assert len(in_window) < rpm
            before.append(at)
        else:  # ...refused only when full, and told when the oldest that must go slides out
            assert len(in_window) >= rpm
            must_go = in_window[len(in_window) - rpm]
            assert a.retry_after_s == pytest.approx(must_go + WINDOW_S - at, abs=1e-6)


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
@PROPERTY
@given(gaps=gaps, tokens=st.integers(min_value=1, max_value=50))
def test_tokens_slide_too(request: pytest.FixtureRequest, kind: str, gaps, tokens) -> None:
    tpm = 100
    outcomes = replay(kind, store_url(request, kind), gaps, 10_000, tpm, tokens)
    admitted = [at for at, a in outcomes if a.admitted]
    # A request is refused once the window's tokens reach the limit, so the window holds at most the
    # limit plus one request's tokens (the one admitted just under it).
    assert max_in_any_window(admitted) * tokens < tpm + tokens


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
def test_the_whole_limit_at_a_minute_boundary_is_not_twice_the_rate(request: pytest.FixtureRequest, kind: str) -> None:
    """Fixed windows admitted 10 at :59 and 10 more at :00; a sliding window admits the second 10 a minute later."""
    subject = f"boundary-{next(_subjects)}"
    minute_end = (T0 // 60 + 1) * 60

    async def run(store: LimitStore) -> tuple[int, int, bool]:
        first = [await store.admit([Quota(subject, 10, None)], 1, minute_end - 0.5) for _ in range(10)]
        second = [await store.admit([Quota(subject, 10, None)], 1, minute_end + 0.5) for _ in range(10)]
        later = await store.admit([Quota(subject, 10, None)], 1, minute_end + 59.6)
        return sum(a.admitted for a in first), sum(a.admitted for a in second), later.admitted

    first, second, later = asyncio.run(with_store(kind, store_url(request, kind), run))
    assert (first, second, later) == (10, 0, True)


def test_seeded_spend_counts_toward_the_budget() -> None:
    store = MemoryLimitStore()
    store.seed_spend("team:a", usd_day=1.5, usd_month=4.0, at=T0)
    asyncio.run(store.spend(["team:a"], 0.25, 0, T0 + 1))
    (counted,) = asyncio.run(store.read(["team:a"], T0 + 2))
    assert (counted.usd_day, counted.usd_month) == (1.75, 4.25)
