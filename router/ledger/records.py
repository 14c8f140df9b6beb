"""What the ledger keeps: one `CostRecord` per request, folded into aggregate rows per time bucket.

A row is keyed by (granularity, bucket start, route, model, rule, tenant) and holds additive counters
only (counts, tokens, USD, a latency histogram), so rows from many replicas, or many flushes, add up
exactly, in SQLite and in Redis alike. Each record is also folded into rows of its own granularities
(`client-minute`, `client-hour`, `client-day`) keyed by (route, client program, API, tenant) in the
same four slots: traffic by client (Claude Code, Codex, SDKs) without a schema change, and never summed
with the main rows, since a query reads one granularity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GRANULARITIES: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
CLIENT_PREFIX = "client-"
BUCKET_S: dict[str, int] = {**GRANULARITIES, **{CLIENT_PREFIX + g: s for g, s in GRANULARITIES.items()}}
"""Bucket sizes of every granularity the stores hold, the by-client ones included."""
# Upper bounds (ms) of the latency histogram's buckets; the last one is open-ended.
LATENCY_BUCKETS_MS: tuple[float, ...] = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, math.inf)
COUNTERS = (
    "requests",
    "errors",
    "fallbacks",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "counterfactual_usd",
    "latency_ms_sum",
)
FIELDS = COUNTERS + tuple(f"lat_{i}" for i in range(len(LATENCY_BUCKETS_MS)))


@dataclass(frozen=True, slots=True)
class CostRecord:
    at: float
    """Unix time the request finished."""
    route: str
    """local | cloud | cache: how it was answered."""
    model: str
    rule: str
    """Why it went there: the rule's name, `requested-model`, `default`..."""
    tenant: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    counterfactual_usd: float
    latency_ms: float
    fallback: str | None = None
    client: str = "unknown"
    """The client program's family (`router/clients.py`): claude-code, codex, openai-sdk..."""
    api: str = "chat"

    @property
    def savings_usd(self) -> float:
        return self.counterfactual_usd - self.cost_usd

    def counters(self) -> dict[str, float]:
        values = {
            "requests": 1.0,
            "errors": 0.0 if self.status < 400 else 1.0,
            "fallbacks": 1.0 if self.fallback else 0.0,
            "prompt_tokens": float(self.prompt_tokens),
            "completion_tokens": float(self.completion_tokens),
            "cost_usd": self.cost_usd,
            "counterfactual_usd": self.counterfactual_usd,
            "latency_ms_sum": self.latency_ms,
        }
        values[f"lat_{latency_bucket(self.latency_ms)}"] = 1.0
        return values


RowKey = tuple[str, int, str, str, str, str]  # granularity, bucket, route, model, rule, tenant


@dataclass(slots=True)
class Row:
    granularity: str
    bucket: int
    route: str
    model: str
    rule: str
    tenant: str
    values: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> RowKey:
        return (self.granularity, self.bucket, self.route, self.model, self.rule, self.tenant)

    def get(self, name: str) -> float:
        return self.values.get(name, 0.0)


def latency_bucket(latency_ms: float) -> int:
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return i
    return len(LATENCY_BUCKETS_MS) - 1


def bucket_start(at: float, granularity: str) -> int:
    size = GRANULARITIES[granularity]
    return int(at // size) * size


def fold(records: Iterable[CostRecord]) -> dict[RowKey, dict[str, float]]:
    """Aggregate records into row increments, for every granularity at once."""
    rows: dict[RowKey, dict[str, float]] = {}
    for record in records:
        for granularity in GRANULARITIES:
            key = (
                granularity,
                bucket_start(record.at, granularity),
                record.route,
                record.model,
                record.rule,
                record.tenant,
            )
            by_client = (CLIENT_PREFIX + granularity, key[1], record.route, record.client, record.api, record.tenant)
            for row_key in (key, by_client):
                values = rows.setdefault(row_key, {})
                for name, value in record.counters().items():
                    values[name] = values.get(name, 0.0) + value
    return rows


def percentile(histogram: Mapping[int, float], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, interpolated linearly inside its bucket."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    target = q * total
    seen = 0.0
    lower = 0.0
    for i, upper in enumerate(LATENCY_BUCKETS_MS):
        count = histogram.get(i, 0.0)
        if count and seen + count >= target:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = upper if not math.isinf(upper) else lower
    return lower
