"""Where judgements and the shadow spend live: beside the ledger, in its SQLite file or in Redis.

SQLite: a `judgements` table in the ledger's file (one process, survives restarts). Redis: one list per
UTC day (`router:judgements:<day>`), so every replica writes to and reads from the same judgements, and
one spend counter per day, so the daily cap holds for all replicas together. While Redis is down,
judgements and spend go to the SQLite file instead, as the ledger's rows do.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from router.quality.records import Judgement
from router.redis_client import RedisGuard

DAY_S = 86400


def day_of(at: float) -> int:
    return int(at // DAY_S)


class JudgementStore(Protocol):
    async def add(self, judgements: list[Judgement]) -> None: ...

    async def query(self, since: float, until: float, embeddings: bool = False) -> list[Judgement]:
        """The window's judgements, oldest first; their embeddings only when asked (training)."""
        ...

    async def spend(self, usd: float, at: float | None = None) -> float:
        """Add to the day's shadow spend; returns the day's total."""
        ...

    async def spent(self, at: float | None = None) -> float: ...

    async def close(self) -> None: ...


class SqliteJudgementStore:
    def __init__(self, path: Path | str, retention_days: int = 400) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS judgements (at REAL NOT NULL, data TEXT NOT NULL, embedding BLOB)")
        self._db.execute("CREATE INDEX IF NOT EXISTS judgements_at ON judgements (at)")
        self._db.execute("CREATE TABLE IF NOT EXISTS shadow_spend (day INTEGER PRIMARY KEY, usd REAL NOT NULL)")
        self._lock = threading.Lock()
        self._retention_s = retention_days * DAY_S

    def _add(self, judgements: list[Judgement]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO judgements VALUES (?, ?, ?)",
                [(j.at, j.to_json(), j.embedding_bytes()) for j in judgements],
            )
            self._db.execute("DELETE FROM judgements WHERE at < ?", (time.time() - self._retention_s,))
            self._db.execute("COMMIT")

    def _query(self, since: float, until: float, embeddings: bool) -> list[Judgement]:
        columns = "data, embedding" if embeddings else "data, NULL"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM judgements WHERE at >= ? AND at <= ? ORDER BY at", (since, until)
            ).fetchall()
        return [Judgement.from_json(data, embedding) for data, embedding in rows]

    def _spend(self, usd: float, day: int) -> float:
        with self._lock:
            self._db.execute(
                "INSERT INTO shadow_spend VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET usd = usd + excluded.usd",
                (day, usd),
            )
            return self._spent(day)

    def _spent(self, day: int) -> float:
        row = self._db.execute("SELECT usd FROM shadow_spend WHERE day = ?", (day,)).fetchone()
        return float(row[0]) if row else 0.0

    async def add(self, judgements: list[Judgement]) -> None:
        if judgements:
            await asyncio.to_thread(self._add, judgements)

    async def query(self, since: float, until: float, embeddings: bool = False) -> list[Judgement]:
        return await asyncio.to_thread(self._query, since, until, embeddings)

    async def spend(self, usd: float, at: float | None = None) -> float:
        return await asyncio.to_thread(self._spend, usd, day_of(at or time.time()))

    async def spent(self, at: float | None = None) -> float:
        def read() -> float:
            with self._lock:
                return self._spent(day_of(at or time.time()))

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisJudgementStore:
    """Judgements shared by every replica; the SQLite store stands in while Redis is unreachable."""

    def __init__(
        self, guard: RedisGuard, local: SqliteJudgementStore, prefix: str = "router", retention_days: int = 400
    ) -> None:
        self._guard = guard
        self._local = local
        self._prefix = prefix
        self._retention_s = retention_days * DAY_S

    def _list(self, day: int) -> str:
        return f"{self._prefix}:judgements:{{{day}}}"  # a hash tag: a day's two lists share a cluster slot

    def _embeddings(self, day: int) -> str:
        return f"{self._list(day)}:embeddings"

    def _spend_key(self, day: int) -> str:
        return f"{self._prefix}:shadow:spend:{day}"

    async def add(self, judgements: list[Judgement]) -> None:
        if not judgements:
            return

        by_day: dict[int, list[Judgement]] = {}
        for j in judgements:
            by_day.setdefault(day_of(j.at), []).append(j)

        async def call(r: Any) -> None:
            for day, members in by_day.items():
                # One transaction per day: the judgement and its embedding land at the same index of the
                # day's two lists, or neither does.
                async with r.pipeline(transaction=True) as pipe:
                    pipe.rpush(self._list(day), *(j.to_json() for j in members))
                    pipe.rpush(
                        self._embeddings(day), *(base64.b64encode(j.embedding_bytes()).decode() for j in members)
                    )
                    for key in (self._list(day), self._embeddings(day)):
                        pipe.expireat(key, (day + 1) * DAY_S + self._retention_s)
                    await pipe.execute()

        await self._guard.run("judgements", call, lambda: self._local.add(judgements))

    async def query(self, since: float, until: float, embeddings: bool = False) -> list[Judgement]:
        days = list(range(day_of(since), day_of(until) + 1))

        async def call(r: Any) -> list[Judgement]:
            found = []
            for day in days:
                async with r.pipeline(transaction=True) as pipe:
                    pipe.lrange(self._list(day), 0, -1)
                    if embeddings:
                        pipe.lrange(self._embeddings(day), 0, -1)
                    items, *vectors = await pipe.execute()
                paired = zip(items, vectors[0], strict=False) if embeddings else ((raw, None) for raw in items)
                found += [
                    Judgement.from_json(raw, base64.b64decode(vector) if vector else None) for raw, vector in paired
                ]
            return sorted((j for j in found if since <= j.at <= until), key=lambda j: j.at)

        return await self._guard.run("judgements", call, lambda: self._local.query(since, until, embeddings))

    async def spend(self, usd: float, at: float | None = None) -> float:
        day = day_of(at or time.time())

        async def call(r: Any) -> float:
            async with r.pipeline(transaction=False) as pipe:
                pipe.incrbyfloat(self._spend_key(day), usd)
                pipe.expire(self._spend_key(day), 2 * DAY_S)
                total, _ = await pipe.execute()
            return float(total)

        return await self._guard.run("shadow-spend", call, lambda: self._local.spend(usd, at))

    async def spent(self, at: float | None = None) -> float:
        day = day_of(at or time.time())

        async def call(r: Any) -> float:
            return float(await r.get(self._spend_key(day)) or 0.0)

        return await self._guard.run("shadow-spend", call, lambda: self._local.spent(at))

    async def close(self) -> None:
        await self._local.close()


class LiveThresholdStore(Protocol):
    """Where auto-calibrated thresholds are shared: each rule's (written, live) pair, and who steps next."""

    async def claim(self, interval_s: float) -> bool:
        """Whether this replica takes this interval's step (one replica per interval, across all of them)."""
        ...

    async def read(self) -> dict[str, tuple[float, float]]: ...

    async def write(self, values: dict[str, tuple[float, float]]) -> None: ...


class MemoryLiveThresholds:
    """One process: it always takes the step, and keeps its thresholds to itself."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}

    async def claim(self, interval_s: float) -> bool:
        return True

    async def read(self) -> dict[str, tuple[float, float]]:
        return dict(self._values)

    async def write(self, values: dict[str, tuple[float, float]]) -> None:
        self._values = dict(values)


class RedisLiveThresholds:
    """Replicas share one set of live thresholds; a short-lived key elects the replica that steps, so the
    thresholds move at most `max_step` per interval however many replicas there are. While Redis is down
    each replica steps on its own (as one process would)."""

    def __init__(self, guard: RedisGuard, prefix: str = "router") -> None:
        self._guard = guard
        self._key = f"{prefix}:auto-thresholds"
        self._lock = f"{prefix}:auto-calibrate:step"
        self._local = MemoryLiveThresholds()

    async def claim(self, interval_s: float) -> bool:
        async def call(r: Any) -> bool:
            return bool(await r.set(self._lock, "1", nx=True, px=max(1, int(interval_s * 900))))

        return await self._guard.run("auto-calibrate", call, lambda: self._local.claim(interval_s))

    async def read(self) -> dict[str, tuple[float, float]]:
        async def call(r: Any) -> dict[str, tuple[float, float]]:
            found = await r.hgetall(self._key)
            pairs = (value.split("|") for value in found.values())
            return {rule: (float(w), float(v)) for rule, (w, v) in zip(found, pairs, strict=True)}

        return await self._guard.run("auto-calibrate", call, self._local.read)

    async def write(self, values: dict[str, tuple[float, float]]) -> None:
        async def call(r: Any) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(self._key)
                if values:
                    pipe.hset(self._key, mapping={rule: f"{w!r}|{v!r}" for rule, (w, v) in values.items()})
                await pipe.execute()

        await self._local.write(values)
        await self._guard.run("auto-calibrate", call, lambda: self._local.write(values))
