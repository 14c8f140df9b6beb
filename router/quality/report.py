"""Quality retained beside money saved: the `quality` part of `/v1/router/stats`, `router stats` and the
dashboard, over the same window as the savings, overall and per rule, tenant and local model."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from router.config import ShadowConfig
from router.ledger import Ledger
from router.ledger.ledger import LedgerWindow
from router.ledger.records import Row
from router.quality.estimate import Estimate, quality_retained
from router.quality.records import Judgement
from router.quality.store import JudgementStore

GROUP_LIMIT = 20


def cloud_answers(rows: Sequence[Row], cloud_models: set[str], attribute: str | None = None) -> dict[str, float]:
    """Successful answers a cloud model gave (fresh, or from the cache), by rule or tenant (`""`: all)."""
    counts: dict[str, float] = defaultdict(float)
    for row in rows:
        if row.route == "cloud" or (row.route == "cache" and row.model in cloud_models):
            ok = row.get("requests") - row.get("errors")
            counts[getattr(row, attribute) if attribute else ""] += ok
    return counts


def _usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:.6f}"


def headline(savings_usd: float, estimate: Estimate) -> str:
    if estimate.value is None:
        return f"saved {_usd(savings_usd)}; quality not estimated: {estimate.note}"
    half = max(estimate.value - (estimate.low or 0), (estimate.high or 0) - estimate.value)
    return (
        f"saved {_usd(savings_usd)} at {100 * estimate.value:.0f}% ± {100 * half:.0f}% of cloud quality, "
        f"{estimate.judged} judged"
    )


def quality_section(
    judgements: Sequence[Judgement],
    rows: Sequence[Row],
    cloud_models: set[str],
    min_samples: int,
    shadowing: bool = True,
) -> dict[str, Any]:
    cloud_all = cloud_answers(rows, cloud_models).get("", 0.0)
    overall = quality_retained(judgements, cloud_all, min_samples)
    if not shadowing and not judgements:  # say why there is nothing, rather than "too few"
        overall = Estimate(None, None, None, 0, "shadow evaluation is off (`shadow.share` in the config)")
    savings = sum(row.get("counterfactual_usd") - row.get("cost_usd") for row in rows)

    def grouped(attribute: str, with_cloud: bool) -> list[dict[str, Any]]:
        members: dict[str, list[Judgement]] = defaultdict(list)
        for j in judgements:
            members[getattr(j, attribute)].append(j)
        cloud = cloud_answers(rows, cloud_models, attribute) if with_cloud else {}
        ranked = sorted(members.items(), key=lambda item: -len(item[1]))[:GROUP_LIMIT]
        return [
            {attribute: name, **quality_retained(group, cloud.get(name, 0.0), min_samples).as_dict()}
            for name, group in ranked
        ]

    methods: dict[str, int] = defaultdict(int)
    for j in judgements:
        methods[j.method] += 1
    return {
        "overall": overall.as_dict(),
        "headline": headline(savings, overall),
        "min_samples": min_samples,
        "rules": grouped("rule", True),
        "tenants": grouped("tenant", True),
        # Per local model: how its own answers compare (the cloud's answers are no model's of these).
        "models": grouped("model", False),
        "methods": dict(methods),
        "strata": {s: sum(1 for j in judgements if j.stratum == s) for s in ("local", "cloud")},
    }


class QualityReporter:
    """Reads judgements and ledger rows for a window; one per gateway (and one per `router stats`)."""

    def __init__(
        self,
        store: JudgementStore,
        ledger: Ledger,
        config: ShadowConfig,
        cloud_models: set[str],
        status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self._ledger = ledger
        self._config = config
        self._cloud_models = cloud_models
        self._status = status

    async def judgements(self, since: float, until: float) -> list[Judgement]:
        return await self.store.query(since, until)

    async def report(
        self, window: str = "24h", now: float | None = None, view: LedgerWindow | None = None
    ) -> dict[str, Any]:
        """The quality section for a window; `view` is the ledger's rows of it when the caller has read them
        already (the stats endpoint reads them once for the savings and for this)."""
        status = self._status() if self._status else {}  # before the reads: `pending: 0` then covers them
        view = view or await self._ledger.read_window(window, now)
        judgements = await self.store.query(view.since, view.until)
        # The intervals are numpy work proportional to the judgements: off the event loop.
        section = await asyncio.to_thread(quality_section, judgements, view.rows, self._cloud_models,
                                          self._config.min_samples, self._config.enabled)  # fmt: skip
        section["shadow"] = {
            "share": self._config.share,
            "explore": self._config.explore,
            "judge": self._config.judge,
            "max_usd_per_day": self._config.max_usd_per_day,
            "spent_usd_today": round(await self.store.spent(), 6),
            **status,
        }
        return section
