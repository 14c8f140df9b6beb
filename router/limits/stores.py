"""Where counters live: sliding one-minute windows for requests and tokens, day and month sums of spend.

Rate limits are a sliding log: every admitted request (and its tokens) is kept with its time for one
minute, so no 60-second span ever admits more than the limit. Fixed per-minute windows let a client
send the whole limit at :59 and again at :00 (twice the rate at the boundary); a log has no boundary,
and it knows exactly when the next request will fit, which is what `Retry-After` says.

`RedisLimitStore` checks and counts in one Lua script, so two replicas can never both admit the last
request of a window; every key carries the same hash tag, so the script also runs on a Redis Cluster.
While Redis is away, the in-process `MemoryLimitStore` stands in (limits then hold per replica), and
Redis's counters take over again when it is back.
"""

from __future__ import annotations

import bisect
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

from router.redis_client import RedisGuard

KEY_PREFIX = "hr:{limits}"
WINDOW_S = 60.0
DAY_TTL_S = 2 * 86400
MONTH_TTL_S = 32 * 86400


@dataclass(frozen=True, slots=True)
class Counted:
    """What one subject has used: requests and tokens in the last minute, this day's and month's spend."""

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
    retry_after_s: float | None = None
    """When refused: seconds until enough of the window has slid past for the request to fit."""


@dataclass(frozen=True, slots=True)
class Quota:
    subject: str
    requests_per_minute: int | None
    tokens_per_minute: int | None


def periods(at: float) -> tuple[str, str]:
    """(day, month) labels of a moment, UTC."""
    t = time.gmtime(at)
    return time.strftime("%Y%m%d", t), time.strftime("%Y%m", t)


def _keys(subject: str, at: float) -> list[str]:
    day, month = periods(at)
    base = f"{KEY_PREFIX}:{subject}"
    return [f"{base}:r", f"{base}:t", f"{base}:usd:d:{day}", f"{base}:usd:m:{month}"]


def wait_until_under(entries: list[tuple[float, int]], used: int, limit: int, at: float) -> float:
    """Seconds until the oldest entries (time, amount) slide out far enough that `used` drops below `limit`."""
    for t, amount in entries:
        used -= amount
        if used < limit:
            return max(0.0, t + WINDOW_S - at)
    return WINDOW_S


class LimitStore(Protocol):
    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission: ...
    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None: ...
    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]: ...
    def seed_spend(self, subject: str, usd_day: float, usd_month: float, at: float) -> None: ...
    def describe(self) -> str: ...


class _Log:
    """(time, amount) entries of the last window, oldest first, with their running sum."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int]] = []
        self.total = 0

    def slide(self, at: float) -> None:
        cut = bisect.bisect_right(self.entries, (at - WINDOW_S, float("inf")))
        if cut:
            self.total -= sum(amount for _, amount in self.entries[:cut])
            del self.entries[:cut]

    def add(self, at: float, amount: int) -> None:
        bisect.insort(self.entries, (at, amount))  # spend() adds tokens at the request's own time
        self.total += amount


class MemoryLimitStore:
    """Counters in this process: exact for one replica, and the stand-in while Redis is away."""

    def __init__(self) -> None:
        self._requests: dict[str, _Log] = {}
        self._tokens: dict[str, _Log] = {}
        self._usd: dict[str, float] = {}

    def _log(self, logs: dict[str, _Log], subject: str, at: float) -> _Log:
        log = logs.setdefault(subject, _Log())
        log.slide(at)
        return log

    def _counted(self, subject: str, at: float) -> Counted:
        _, _, day, month = _keys(subject, at)
        requests, tokens = self._log(self._requests, subject, at), self._log(self._tokens, subject, at)
        return Counted(len(requests.entries), tokens.total, self._usd.get(day, 0.0), self._usd.get(month, 0.0))

    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission:
        counted = tuple(self._counted(q.subject, at) for q in quotas)
        for i, (quota, c) in enumerate(zip(quotas, counted, strict=True)):
            if quota.requests_per_minute is not None and c.requests >= quota.requests_per_minute:
                wait = wait_until_under(
                    self._requests[quota.subject].entries, c.requests, quota.requests_per_minute, at
                )
                return Admission(False, counted, i, "requests", wait)
            if quota.tokens_per_minute is not None and c.tokens >= quota.tokens_per_minute:
                wait = wait_until_under(self._tokens[quota.subject].entries, c.tokens, quota.tokens_per_minute, at)
                return Admission(False, counted, i, "tokens", wait)
        for quota in quotas:
            self._requests[quota.subject].add(at, 1)
            self._tokens[quota.subject].add(at, prompt_tokens)
        self._forget_idle(at)
        return Admission(True, counted)

    def _forget_idle(self, at: float) -> None:
        if len(self._requests) > 10_000:  # subjects quiet for a whole window hold nothing worth keeping
            for logs in (self._requests, self._tokens):
                for subject in [s for s, log in logs.items() if not log.entries or log.entries[-1][0] <= at - WINDOW_S]:
                    del logs[subject]

    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None:
        for subject in subjects:
            _, _, day, month = _keys(subject, at)
            if tokens:
                self._log(self._tokens, subject, at).add(at, tokens)
            self._usd[day] = self._usd.get(day, 0.0) + usd
            self._usd[month] = self._usd.get(month, 0.0) + usd

    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]:
        return tuple(self._counted(s, at) for s in subjects)

    def seed_spend(self, subject: str, usd_day: float, usd_month: float, at: float) -> None:
        """Spend already on record (the ledger's, at start), so a restart does not reset budgets."""
        _, _, day, month = _keys(subject, at)
        self._usd[day] = max(self._usd.get(day, 0.0), usd_day)
        self._usd[month] = max(self._usd.get(month, 0.0), usd_month)

    def describe(self) -> str:
        return "memory"


# Shared by the scripts: a token log's members are "amount:nonce" (a sorted set keeps each member once).
_LUA_WINDOW = """
local function slide(key, at, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', at - window)
end
local function token_sum(key)
  local sum = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do sum = sum + tonumber(string.match(m, '^(%d+):')) end
  return sum
end
"""

# KEYS: 4 per subject (request log, token log, usd day, usd month). ARGV: at, window, prompt tokens,
# nonce, then per subject its requests and tokens per minute (-1: no limit). Checks every subject
# first, then counts in all: a request refused by one subject is counted by none.
_ADMIT = (
    _LUA_WINDOW
    + """
local at, window, tokens, nonce = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local counted = {}
for i = 1, #KEYS / 4 do
  local rkey, tkey = KEYS[4*i-3], KEYS[4*i-2]
  slide(rkey, at, window)
  slide(tkey, at, window)
  local r, t = redis.call('ZCARD', rkey), token_sum(tkey)
  local rpm, tpm = tonumber(ARGV[2*i+3]), tonumber(ARGV[2*i+4])
  table.insert(counted, tostring(r))
  table.insert(counted, tostring(t))
  table.insert(counted, redis.call('GET', KEYS[4*i-1]) or '0')
  table.insert(counted, redis.call('GET', KEYS[4*i]) or '0')
  if rpm >= 0 and r >= rpm then
    local oldest = redis.call('ZRANGE', rkey, r - rpm, r - rpm, 'WITHSCORES')
    return {'0', tostring(i), 'requests', tostring(tonumber(oldest[2]) + window - at), unpack(counted)}
  end
  if tpm >= 0 and t >= tpm then
    local used = t
    local flat = redis.call('ZRANGE', tkey, 0, -1, 'WITHSCORES')
    for j = 1, #flat, 2 do
      used = used - tonumber(string.match(flat[j], '^(%d+):'))
      if used < tpm then
        return {'0', tostring(i), 'tokens', tostring(tonumber(flat[j+1]) + window - at), unpack(counted)}
      end
    end
    return {'0', tostring(i), 'tokens', tostring(window), unpack(counted)}
  end
end
for i = 1, #KEYS / 4 do
  redis.call('ZADD', KEYS[4*i-3], at, nonce)
  redis.call('ZADD', KEYS[4*i-2], at, tokens .. ':' .. nonce)
  redis.call('PEXPIRE', KEYS[4*i-3], math.ceil(window * 1000) + 1000)
  redis.call('PEXPIRE', KEYS[4*i-2], math.ceil(window * 1000) + 1000)
end
return {'1', '0', '', '0', unpack(counted)}
"""
)

# KEYS: 3 per subject (token log, usd day, usd month). ARGV: usd, tokens, at, window, nonce, day ttl, month ttl.
_SPEND = """
for i = 1, #KEYS / 3 do
  if tonumber(ARGV[2]) > 0 then
    redis.call('ZADD', KEYS[3*i-2], ARGV[3], ARGV[2] .. ':' .. ARGV[5])
    redis.call('PEXPIRE', KEYS[3*i-2], math.ceil(tonumber(ARGV[4]) * 1000) + 1000)
  end
  redis.call('INCRBYFLOAT', KEYS[3*i-1], ARGV[1])
  redis.call('EXPIRE', KEYS[3*i-1], ARGV[6])
  redis.call('INCRBYFLOAT', KEYS[3*i], ARGV[1])
  redis.call('EXPIRE', KEYS[3*i], ARGV[7])
end
return 1
"""

# KEYS: 4 per subject, as for admit. ARGV: at, window. Counts without admitting.
_READ = (
    _LUA_WINDOW
    + """
local at, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local counted = {}
for i = 1, #KEYS / 4 do
  slide(KEYS[4*i-3], at, window)
  slide(KEYS[4*i-2], at, window)
  table.insert(counted, tostring(redis.call('ZCARD', KEYS[4*i-3])))
  table.insert(counted, tostring(token_sum(KEYS[4*i-2])))
  table.insert(counted, redis.call('GET', KEYS[4*i-1]) or '0')
  table.insert(counted, redis.call('GET', KEYS[4*i]) or '0')
end
return counted
"""
)

_nonces = itertools.count()
_PROCESS = os.urandom(4).hex()


def _nonce() -> str:
    """Unique across replicas and calls: a sorted set would merge two equal members into one."""
    return f"{_PROCESS}{next(_nonces)}"


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
        self._read = redis.client.register_script(_READ)

    async def admit(self, quotas: list[Quota], prompt_tokens: int, at: float) -> Admission:
        keys = [k for q in quotas for k in _keys(q.subject, at)]
        args: list[Any] = [repr(at), WINDOW_S, prompt_tokens, _nonce()]
        for q in quotas:
            args += [q.requests_per_minute if q.requests_per_minute is not None else -1]
            args += [q.tokens_per_minute if q.tokens_per_minute is not None else -1]

        async def call(_: Any) -> Admission:
            out = await self._admit(keys=keys, args=args)
            admitted, index, on = out[0] == "1", int(out[1]), out[2]
            counted = _parse_counted(out[4:])
            if admitted:
                return Admission(True, counted)
            return Admission(False, counted, index - 1, on, float(out[3]))

        return await self._redis.run("limits admit", call, lambda: self._fallback.admit(quotas, prompt_tokens, at))

    async def spend(self, subjects: list[str], usd: float, tokens: int, at: float) -> None:
        keys = [k for s in subjects for k in _keys(s, at)[1:]]
        args = [repr(usd), tokens, repr(at), WINDOW_S, _nonce(), DAY_TTL_S, MONTH_TTL_S]

        async def call(_: Any) -> None:
            await self._spend(keys=keys, args=args)

        await self._redis.run("limits spend", call, lambda: self._fallback.spend(subjects, usd, tokens, at))

    async def read(self, subjects: list[str], at: float) -> tuple[Counted, ...]:
        keys = [k for s in subjects for k in _keys(s, at)]

        async def call(_: Any) -> tuple[Counted, ...]:
            return _parse_counted(await self._read(keys=keys, args=[repr(at), WINDOW_S]) if keys else [])

        return await self._redis.run("limits read", call, lambda: self._fallback.read(subjects, at))

    def seed_spend(self, subject: str, usd_day: float, usd_month: float, at: float) -> None:
        self._fallback.seed_spend(subject, usd_day, usd_month, at)  # Redis keeps its own; this is for outages

    def describe(self) -> str:
        return "redis"
