"""The aggregate stores: the same cases on SQLite and on a real Redis; sums are exact and shared."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.ledger import CostRecord, RedisLedgerStore, SqliteLedgerStore
from router.ledger.records import fold, percentile
from router.ledger.stats import summarize
from router.redis_client import RedisGuard, connect
from tests.conftest import redis_url_for
from tests.servers import RedisServer

T0 = 1_800_000_000.0  # a fixed moment, on a day boundary's safe side


def rec(at: float = T0, route: str = "local", latency_ms: float = 80.0, **kw: object) -> CostRecord:
    values = {
        "model": "m", "rule": "default", "tenant": "t", "status": 200, "prompt_tokens": 10, "completion_tokens": 5,
        "cost_usd": 0.0, "counterfactual_usd": 0.001, **kw,
    }  # fmt: skip
    return CostRecord(at=at, route=route, latency_ms=latency_ms, **values)


@pytest.fixture(params=["sqlite", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    sqlite = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    if request.param == "sqlite":
        yield sqlite
    else:
        guard = RedisGuard(connect(redis_url_for(request, request.param)))
        store = RedisLedgerStore(guard, sqlite, prefix=f"t-{request.node.name}")
        await store.clear()
        yield store
        await guard.close()
    await sqlite.close()


async def test_increments_add_up_exactly_across_batches(store) -> None:
    await store.add(fold([rec(), rec(route="cloud", cost_usd=0.002, counterfactual_usd=0.002)]))
    await store.add(fold([rec(at=T0 + 30)]))
    rows = await store.query("minute", int(T0) - 60, int(T0) + 60)
    by_route = {row.route: row for row in rows}
    assert by_route["local"].get("requests") == 2
    assert by_route["local"].get("prompt_tokens") == 20
    assert by_route["local"].get("counterfactual_usd") == pytest.approx(0.002)
    assert by_route["cloud"].get("cost_usd") == pytest.approx(0.002)


async def test_queries_select_the_granularity_and_the_range(store) -> None:
    await store.add(fold([rec(at=T0), rec(at=T0 + 3 * 3600)]))
    assert len(await store.query("hour", int(T0) - 3600, int(T0) + 3600)) == 1
    assert len(await store.query("hour", int(T0) - 3600, int(T0) + 4 * 3600)) == 2
    assert len(await store.query("day", int(T0) - 86400, int(T0) + 86400)) >= 1


async def test_sqlite_history_survives_a_restart(tmp_path: Path) -> None:
    first = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    await first.add(fold([rec()]))
    await first.close()
    again = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    rows = await again.query("day", int(T0) - 86400, int(T0) + 86400)
    assert sum(row.get("requests") for row in rows) == 1
    await again.close()


async def test_two_replicas_writing_to_one_redis_add_up(redis_server: RedisServer, tmp_path: Path) -> None:
    guards = [RedisGuard(connect(redis_server.url)) for _ in range(2)]
    stores = [
        RedisLedgerStore(g, SqliteLedgerStore(tmp_path / f"{i}.sqlite"), prefix="replicas")
        for i, g in enumerate(guards)
    ]
    await stores[0].clear()
    for _ in range(50):
        for store in stores:
            await store.add(fold([rec(cost_usd=0.0001)]))
    rows = await stores[1].query("hour", int(T0) - 3600, int(T0) + 3600)
    assert sum(row.get("requests") for row in rows) == 100
    assert sum(row.get("cost_usd") for row in rows) == pytest.approx(0.01)
    for g in guards:
        await g.close()


def test_latency_percentiles_come_from_the_histogram() -> None:
    rows = fold([rec(latency_ms=ms) for ms in (5, 20, 40, 90, 200, 400, 800, 2000, 4000, 9000)])
    hour_rows = [r for k, r in rows.items() if k[0] == "hour"]
    histogram = {i: hour_rows[0].get(f"lat_{i}", 0.0) for i in range(13)}
    p50 = percentile(histogram, 0.5)
    assert 100 <= p50 <= 250
    assert percentile({}, 0.5) is None


def test_summary_shares_savings_and_reasons() -> None:
    from router.ledger.records import Row

    increments = fold(
        [rec(), rec(), rec(route="cloud", rule="hard", cost_usd=0.001), rec(route="cache", counterfactual_usd=0.002)]
    )
    rows = [Row(*key, values=dict(values)) for key, values in increments.items() if key[0] == "minute"]
    summary = summarize(rows, "1h", "minute", T0 - 3600, T0 + 60, "gpt-4o-mini")
    assert summary["totals"]["requests"] == 4
    assert summary["routes"]["local"]["share"] == 0.5
    assert summary["cache_hit_rate"] == 0.25
    assert summary["totals"]["savings_usd"] == pytest.approx(0.005 - 0.001)
    assert summary["escalations"] == [
        {"reason": "hard", "requests": 1, "cost_usd": 0.001, "counterfactual_usd": 0.001, "savings_usd": 0.0}
    ]
