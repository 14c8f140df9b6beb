"""Where aggregate rows live: a SQLite file (one process, survives restarts) or Redis (all replicas).

Both take row increments (`fold` output) and answer range queries; increments are atomic (an UPSERT
adding to the row in SQLite, HINCRBYFLOAT in Redis), so concurrent writers never lose a count.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from router.ledger.records import BUCKET_S, CLIENT_PREFIX, FIELDS, Row, RowKey
from router.redis_client import RedisGuard

# Retention per granularity, in seconds; the day buckets' retention comes from the config.
RETENTION_S = {"minute": 2 * 86400, "hour": 31 * 86400}


def _retention(days: int) -> dict[str, int]:
    """Seconds each granularity's buckets are kept, by-client ones alike."""
    kept = {**RETENTION_S, "day": days * 86400}
    return {**kept, **{CLIENT_PREFIX + g: s for g, s in kept.items()}}


class LedgerStore(Protocol):
    async def add(self, increments: Mapping[RowKey, Mapping[str, float]]) -> None: ...

    async def query(self, granularity: str, since: int, until: int) -> list[Row]: ...

    async def clear(self) -> None: ...

    async def close(self) -> None: ...


class SqliteLedgerStore:
    """Aggregates in a SQLite file (`:memory:` for none); calls run on a worker thread, one at a time."""

    def __init__(self, path: Path | str, retention_days: int = 400) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = ", ".join(f"{name} REAL NOT NULL DEFAULT 0" for name in FIELDS)
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS ledger (granularity TEXT, bucket INTEGER, route TEXT, model TEXT, "
            f"rule TEXT, tenant TEXT, {columns}, PRIMARY KEY (granularity, bucket, route, model, rule, tenant))"
        )
        self._lock = threading.Lock()
        self._retention_s = _retention(retention_days)
        self._pruned_at = 0.0

    def _add(self, increments: Mapping[RowKey, Mapping[str, float]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for key, values in increments.items():
                    names = list(values)
                    placeholders = ", ".join("?" for _ in names)
                    updates = ", ".join(f"{n} = {n} + excluded.{n}" for n in names)
                    self._db.execute(
                        f"INSERT INTO ledger (granularity, bucket, route, model, rule, tenant, {', '.join(names)}) "
                        f"VALUES (?, ?, ?, ?, ?, ?, {placeholders}) "
                        f"ON CONFLICT (granularity, bucket, route, model, rule, tenant) DO UPDATE SET {updates}",
                        (*key, *(values[n] for n in names)),
                    )
                self._prune()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        for granularity, keep_s in self._retention_s.items():
            self._db.execute("DELETE FROM ledger WHERE granularity = ? AND bucket < ?", (granularity, now - keep_s))

    def _query(self, granularity: str, since: int, until: int) -> list[Row]:
        with self._lock:
            cursor = self._db.execute(
                f"SELECT granularity, bucket, route, model, rule, tenant, {', '.join(FIELDS)} FROM ledger "
                "WHERE granularity = ? AND bucket >= ? AND bucket <= ? ORDER BY bucket",
                (granularity, since, until),
            )
            return [
                Row(*r[:6], values={n: v for n, v in zip(FIELDS, r[6:], strict=True) if v}) for r in cursor.fetchall()
            ]

    async def add(self, increments: Mapping[RowKey, Mapping[str, float]]) -> None:
        if increments:
            await asyncio.to_thread(self._add, increments)

    async def query(self, granularity: str, since: int, until: int) -> list[Row]:
        return await asyncio.to_thread(self._query, granularity, since, until)

    async def clear(self) -> None:
        def clear() -> None:
            with self._lock:
                self._db.execute("DELETE FROM ledger")

        await asyncio.to_thread(clear)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


_SEP = "\x1f"  # a field separator that no model, rule or tenant name contains


class RedisLedgerStore:
    """Aggregates shared by every replica: one hash per (granularity, bucket), HINCRBYFLOAT per counter.

    While Redis is unreachable, increments go to a local SQLite store instead (and queries read it), so
    requests are never held up; those increments stay local when Redis returns.
    """

    def __init__(self, guard: RedisGuard, local: SqliteLedgerStore, prefix: str = "router", retention_days: int = 400):
        self._guard = guard
        self._local = local
        self._prefix = prefix
        self._retention_s = _retention(retention_days)

    def _key(self, granularity: str, bucket: int) -> str:
        return f"{self._prefix}:ledger:{granularity}:{bucket}"

    async def add(self, increments: Mapping[RowKey, Mapping[str, float]]) -> None:
        if not increments:
            return

        async def call(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                keys = set()
                for (granularity, bucket, *dims), values in increments.items():
                    key = self._key(granularity, bucket)
                    keys.add((key, bucket + BUCKET_S[granularity] + self._retention_s[granularity]))
                    for name, value in values.items():
                        pipe.hincrbyfloat(key, _SEP.join([*dims, name]), value)
                for key, expires_at in keys:
                    pipe.expireat(key, int(expires_at))
                await pipe.execute()

        await self._guard.run("ledger", call, lambda: self._local.add(increments))

    async def query(self, granularity: str, since: int, until: int) -> list[Row]:
        size = BUCKET_S[granularity]
        buckets = list(range(since - since % size, until + 1, size))

        async def call(r: Any) -> list[Row]:
            async with r.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.hgetall(self._key(granularity, bucket))
                results = await pipe.execute()
            rows: dict[RowKey, Row] = {}
            for bucket, fields in zip(buckets, results, strict=True):
                for packed, value in fields.items():
                    route, model, rule, tenant, name = packed.split(_SEP)
                    key = (granularity, bucket, route, model, rule, tenant)
                    row = rows.setdefault(key, Row(*key))
                    row.values[name] = float(value)
            return list(rows.values())

        return await self._guard.run("ledger", call, lambda: self._local.query(granularity, since, until))

    async def clear(self) -> None:
        async def call(r: Any) -> None:
            keys = [key async for key in r.scan_iter(f"{self._prefix}:ledger:*")]
            if keys:
                await r.delete(*keys)

        await self._local.clear()
        await self._guard.run("ledger", call, self._local.clear)

    async def close(self) -> None:
        await self._local.close()
