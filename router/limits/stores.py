"""Where counters live: fixed one-minute windows for requests and tokens, day and month sums of spend.

`RedisLimitStore` checks and counts in one Lua script, so two replicas can never both admit the last
request of a window; every key carries the same hash tag, so the script also runs on a Redis Cluster.
While Redis is away, the in-process `MemoryLimitStore` stands in (limits then hold per replica), and
Redis's counters take over again when it is back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from router.redis_client import RedisGuard

KEY_PREFIX = "hr:{limits}"
WINDOW_TTL_S = 120
DAY_TTL_S = 2 * 86400
MONTH_TTL_S = 32 * 86400


@dataclass(frozen=True, slots=True)
class Counted:
    """What one subject has used: this minute's requests and tokens, this day's and month's spend."""

    requests: int = 0
    tokens: int = 0
    usd_day: float = 0.0
    usd_month: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    counted: tuple[Counted, ...]
    """Per subject, as it stood when admitted (before this request) or refused."""
    refused_by: int | None = None
    """Index of the subject whose limit refused the request."""
    refused_on: str | None = None
    """`requests` or `tokens`."""


@dataclass(frozen=True, slots=True)
class Quota:
    subject: str
    requests_per_minute: int | None
    tokens_per_minute: int | None


def periods(at: float) -> tuple[str, str, str]:
    """(minute, day, month) labels of a moment, UTC."""
    t = time.gmtime(at)
    return str(int(at // 60)), time.strftime("%Y%m%d", t), time.strftime("%Y%m", t)


def _keys(subject: str, at: float) -> list[str]:
    minute, day, month = periods(at)
    base = f"{KEY_PREFIX}:{subject}"
    return [f"{base}:r:{minute}", f"{base}:t:{minute}", f"{base}:usd:d:{day}", f"{base}:usd:m:{month}"]


class LimitStore(Protocol):
    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission: ...
    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None: ...
    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]: ...
    def describe(self) -> str: ...


class MemoryLimitStore:
    """Counters in this process: exact for one replica, and the stand-in while Redis is away."""

    def __init__(self) -> None:
        self._counts: dict[str, float] = {}
        self._expires: dict[str, float] = {}

    def _get(self, key: str, now: float) -> float:
        if self._expires.get(key, now + 1) <= now:
            self._counts.pop(key, None)
            self._expires.pop(key, None)
        return self._counts.get(key, 0.0)

    def _add(self, key: str, amount: float, ttl_s: int, now: float) -> None:
        self._counts[key] = self._get(key, now) + amount
        self._expires[key] = now + ttl_s
        if len(self._expires) > 100_000:  # drop what has expired, now and then
            for stale in [k for k, until in self._expires.items() if until <= now]:
                self._counts.pop(stale, None)
                self._expires.pop(stale, None)

    def _counted(self, subject: str, at: float, now: float) -> Counted:
        r, t, d, m = (self._get(k, now) for k in _keys(subject, at))
        return Counted(int(r), int(t), d, m)

    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission:
        now = time.time()
        counted = tuple(self._counted(q.subject, at, now) for q in quotas)
        for i, (quota, c) in enumerate(zip(quotas, counted, strict=True)):
            if quota.requests_per_minute is not None and c.requests >= quota.requests_per_minute:
                return Admission(False, counted, i, "requests")
            if quota.tokens_per_minute is not None and c.tokens >= quota.tokens_per_minute:
                return Admission(False, counted, i, "tokens")
        for quota in quotas:
            requests, tokens, _, _ = _keys(quota.subject, at)
            self._add(requests, 1, WINDOW_TTL_S, now)
            self._add(tokens, prompt_tokens, WINDOW_TTL_S, now)
        return Admission(True, counted)

    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None:
        now = time.time()
        for subject in subjects:
            _, tok, day, month = _keys(subject, at)
            self._add(tok, tokens, WINDOW_TTL_S, now)
            self._add(day, usd, DAY_TTL_S, now)
            self._add(month, usd, MONTH_TTL_S, now)

    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]:
        now = time.time()
        return tuple(self._counted(s, at, now) for s in subjects)

    def describe(self) -> str:
        return "memory"


# KEYS: 4 per subject (requests, tokens, usd day, usd month). ARGV: prompt tokens, window ttl, then per
# subject its requests and tokens per minute (-1: no limit). Checks every subject, then counts in all.
_ADMIT = """
local n = #KEYS / 4
local counted = {}
for i = 1, n do
  local r = tonumber(redis.call('GET', KEYS[4*i-3]) or '0')
  local t = tonumber(redis.call('GET', KEYS[4*i-2]) or '0')
  local rpm = tonumber(ARGV[2*i+1])
  local tpm = tonumber(ARGV[2*i+2])
  table.insert(counted, tostring(r))
  table.insert(counted, tostring(t))
  table.insert(counted, redis.call('GET', KEYS[4*i-1]) or '0')
  table.insert(counted, redis.call('GET', KEYS[4*i]) or '0')
  if rpm >= 0 and r >= rpm then return {'0', tostring(i), 'requests', unpack(counted)} end
  if tpm >= 0 and t >= tpm then return {'0', tostring(i), 'tokens', unpack(counted)} end
end
for i = 1, n do
  redis.call('INCR', KEYS[4*i-3])
  redis.call('EXPIRE', KEYS[4*i-3], ARGV[2])
  redis.call('INCRBY', KEYS[4*i-2], ARGV[1])
  redis.call('EXPIRE', KEYS[4*i-2], ARGV[2])
end
return {'1', '0', '', unpack(counted)}
"""

# KEYS: 3 per subject (tokens, usd day, usd month). ARGV: usd, tokens, window ttl, day ttl, month ttl.
_SPEND = """
for i = 1, #KEYS / 3 do
  redis.call('INCRBY', KEYS[3*i-2], ARGV[2])
  redis.call('EXPIRE', KEYS[3*i-2], ARGV[3])
  redis.call('INCRBYFLOAT', KEYS[3*i-1], ARGV[1])
  redis.call('EXPIRE', KEYS[3*i-1], ARGV[4])
  redis.call('INCRBYFLOAT', KEYS[3*i], ARGV[1])
  redis.call('EXPIRE', KEYS[3*i], ARGV[5])
end
return 1
"""


def _parse_counted(flat: list[Any]) -> tuple[Counted, ...]:
    return tuple(
        Counted(int(float(flat[i])), int(float(flat[i + 1])), float(flat[i + 2]), float(flat[i + 3]))
        for i in range(0, len(flat), 4)
    )


class RedisLimitStore:
    def __init__(self, redis: RedisGuard, fallback: MemoryLimitStore | None = None) -> None:
        self._redis = redis
        self._fallback = fallback or MemoryLimitStore()
        self._admit = redis.client.register_script(_ADMIT)
        self._spend = redis.client.register_script(_SPEND)

    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission:
        keys = [k for q in quotas for k in _keys(q.subject, at)]
        args: list[Any] = [prompt_tokens, WINDOW_TTL_S]
        for q in quotas:
            args += [q.requests_per_minute if q.requests_per_minute is not None else -1]
            args += [q.tokens_per_minute if q.tokens_per_minute is not None else -1]

        async def call(_: Any) -> Admission:
            out = await self._admit(keys=keys, args=args)
            admitted, index, on = out[0] == "1", int(out[1]), out[2]
            counted = _parse_counted(out[3:])
            return Admission(admitted, counted, None if admitted else index - 1, on or None)

        return await self._redis.run("limits admit", call, lambda: self._fallback.admit(quotas, prompt_tokens, at))

    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None:
        keys = [k for s in subjects for k in _keys(s, at)[1:]]

        async def call(_: Any) -> None:
            await self._spend(keys=keys, args=[repr(usd), tokens, WINDOW_TTL_S, DAY_TTL_S, MONTH_TTL_S])

        await self._redis.run("limits spend", call, lambda: self._fallback.spend(subjects, usd, tokens, at))

    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]:
        keys = [k for s in subjects for k in _keys(s, at)]

        async def call(client: Any) -> tuple[Counted, ...]:
            values = await client.mget(keys) if keys else []
            return _parse_counted([v or "0" for v in values])

        return await self._redis.run("limits read", call, lambda: self._fallback.read(subjects, at))

    def describe(self) -> str:
        return "redis"
