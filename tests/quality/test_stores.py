"""Judgement stores: the SQLite file, and Redis shared by replicas (a real server), with the file standing
in while Redis is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from router.quality import RedisJudgementStore, SqliteJudgementStore
from router.redis_client import RedisGuard, connect
from tests.quality.synthetic import BASE_AT, judged, population
from tests.servers import RedisServer


def _sample(n: int = 40) -> list:
    score, local, cloud = population(400, 11)
    found = judged(score, local, cloud, 0.6, share=0.5, explore=0.5, seed=11)[:n]
    return [type(j)(**{**{f: getattr(j, f) for f in j.__dataclass_fields__}, "at": BASE_AT + i})
            for i, j in enumerate(found)]  # fmt: skip


def test_sqlite_keeps_judgements_and_the_days_spend(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteJudgementStore(tmp_path / "ledger.sqlite")
        sample = _sample()
        await store.add(sample)
        assert await store.query(BASE_AT, BASE_AT + 19, embeddings=True) == sample[:20]
        light = await store.query(BASE_AT, BASE_AT + 19)  # what the quality figures read: no vectors
        assert [j.request_id for j in light] == [j.request_id for j in sample[:20]]
        assert all(j.embedding is None for j in light)
        await store.spend(0.25, at=BASE_AT)
        assert await store.spend(0.5, at=BASE_AT) == 0.75
        assert await store.spent(at=BASE_AT + 86400) == 0.0  # a new day starts at nothing
        await store.close()
        again = SqliteJudgementStore(tmp_path / "ledger.sqlite")  # a restart keeps both
        assert len(await again.query(0, 2e9)) == len(sample)
        assert await again.spent(at=BASE_AT) == 0.75
        await again.close()

    asyncio.run(run())


def test_replicas_share_judgements_and_spend_through_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()

    async def run() -> None:
        a = RedisJudgementStore(RedisGuard(connect(server.url)), SqliteJudgementStore(tmp_path / "a.sqlite"))
        b = RedisJudgementStore(RedisGuard(connect(server.url)), SqliteJudgementStore(tmp_path / "b.sqlite"))
        sample = _sample()
        await a.add(sample[:25])
        await b.add(sample[25:])
        assert await a.query(0, 2e9, embeddings=True) == await b.query(0, 2e9, embeddings=True) == sample
        assert all(j.embedding is None for j in await b.query(0, 2e9))
        await a.spend(1.0, at=BASE_AT)
        assert await b.spend(0.5, at=BASE_AT) == 1.5
        server.stop()  # Redis goes away: judgements land in the replica's own file, nothing is lost
        await a.add(sample[:3])
        assert await a.query(0, 2e9, embeddings=True) == sample[:3]
        for store in (a, b):
            await store.close()

    try:
        asyncio.run(run())
    finally:
        server.stop()
