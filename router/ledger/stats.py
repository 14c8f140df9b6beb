"""Turn aggregate rows into the savings story: totals, shares, series, reasons, latency, tenants."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from router.errors import InvalidRequest
from router.ledger.records import COUNTERS, GRANULARITIES, LATENCY_BUCKETS_MS, Row, percentile

_WINDOW = re.compile(r"^(\d+)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
ROUTES = ("local", "cloud", "cache")


def parse_window(window: str) -> int:
    match = _WINDOW.match(window.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidRequest("window must look like 15m, 6h or 7d", param="window")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > 400 * 86400:
        raise InvalidRequest("window can be at most 400d", param="window")
    return seconds


def choose_granularity(window_s: int) -> str:
    """Minute buckets up to 3 hours, hour buckets up to 7 days, day buckets beyond."""
    if window_s <= 3 * 3600:
        return "minute"
    if window_s <= 7 * 86400:
        return "hour"
    return "day"


def _sum(rows: Iterable[Row]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for row in rows:
        for name, value in row.values.items():
            total[name] += value
    return total


def _money(values: dict[str, float]) -> dict[str, float]:
    cost, counterfactual = values.get("cost_usd", 0.0), values.get("counterfactual_usd", 0.0)
    return {
        "cost_usd": round(cost, 8),
        "counterfactual_usd": round(counterfactual, 8),
        "savings_usd": round(counterfactual - cost, 8),
    }


def _latency(values: dict[str, float]) -> dict[str, float | None]:
    histogram = {i: values.get(f"lat_{i}", 0.0) for i in range(len(LATENCY_BUCKETS_MS))}
    p50, p95 = percentile(histogram, 0.5), percentile(histogram, 0.95)
    return {
        "latency_p50_ms": round(p50, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95, 1) if p95 is not None else None,
    }


def _members(rows: list[Row], attribute: str) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, attribute)].append(row)
    return groups


def _group(rows: list[Row], attribute: str) -> dict[str, dict[str, float]]:
    return {name: _sum(members) for name, members in _members(rows, attribute).items()}


def _ranked(groups: dict[str, dict[str, float]], label: str, limit: int = 20) -> list[dict[str, Any]]:
    ranked = sorted(groups.items(), key=lambda item: -item[1].get("requests", 0.0))[:limit]
    return [{label: name, "requests": int(values.get("requests", 0)), **_money(values)} for name, values in ranked]


def _series(rows: list[Row], granularity: str, since: float, until: float) -> list[dict[str, Any]]:
    """Requests and money per bucket, dense: every bucket of the window, zeros included, so a chart spans
    the window it claims to."""
    series_rows: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        series_rows[row.bucket].append(row)
    size = GRANULARITIES[granularity]
    first, last = int(since // size) * size, int(until // size) * size
    series = []
    for bucket in range(first, last + 1, size):
        values = _sum(series_rows.get(bucket, []))
        per_route = _group(series_rows.get(bucket, []), "route")
        series.append(
            {
                "t": bucket,
                "requests": int(values.get("requests", 0)),
                **_money(values),
                **{route: int(per_route.get(route, {}).get("requests", 0)) for route in ROUTES},
            }
        )
    return series


def summarize(
    rows: list[Row], window: str, granularity: str, since: float, until: float, reference_model: str | None
) -> dict[str, Any]:
    rows = [row for row in rows if row.bucket + GRANULARITIES[granularity] > since]
    totals = _sum(rows)
    requests = totals.get("requests", 0.0)
    counterfactual = totals.get("counterfactual_usd", 0.0)
    by_route = _group(rows, "route")
    routes = {
        route: {
            "requests": int(values.get("requests", 0)),
            "share": round(values.get("requests", 0.0) / requests, 4) if requests else 0.0,
            **_money(values),
            **_latency(values),
        }
        for route, values in ((r, by_route.get(r, {})) for r in ROUTES)
    }
    series = _series(rows, granularity, since, until)
    cloud_rows = [row for row in rows if row.route == "cloud"]
    return {
        "window": window,
        "granularity": granularity,
        "since": int(since),
        "until": int(until),
        "reference_model": reference_model,
        "totals": {
            **{
                name: int(totals.get(name, 0))
                for name in COUNTERS
                if name.endswith(("requests", "errors", "fallbacks"))
            },
            "prompt_tokens": int(totals.get("prompt_tokens", 0)),
            "completion_tokens": int(totals.get("completion_tokens", 0)),
            **_money(totals),
            "savings_pct": round(100 * (counterfactual - totals.get("cost_usd", 0.0)) / counterfactual, 2)
            if counterfactual
            else 0.0,
            **_latency(totals),
        },
        "routes": routes,
        "cache_hit_rate": routes["cache"]["share"],
        "series": series,
        "escalations": _ranked(_group(cloud_rows, "rule"), "reason"),
        "rules": _ranked(_group(rows, "rule"), "rule", limit=10),
        "models": _ranked(_group(rows, "model"), "model"),
        "tenants": _ranked(_group(rows, "tenant"), "tenant"),
    }


def summarize_clients(rows: list[Row]) -> list[dict[str, Any]]:
    """Traffic by client program, from the by-client rows (the client in the `model` slot, the API in
    `rule`): requests by route, tokens, and what was spent and saved."""
    out = []
    for client, members in sorted(_members(rows, "model").items(), key=lambda item: -_sum(item[1])["requests"]):
        values = _sum(members)
        by_route = _group(members, "route")
        out.append({
            "client": client,
            "requests": int(values.get("requests", 0)),
            "routes": {route: int(v.get("requests", 0)) for route, v in by_route.items()},
            "apis": sorted({row.rule for row in members}),
            "prompt_tokens": int(values.get("prompt_tokens", 0)),
            "completion_tokens": int(values.get("completion_tokens", 0)),
            **_money(values),
        })  # fmt: skip
    return out
