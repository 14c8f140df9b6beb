"""The ledger: prices each request, buffers the records, and folds them into the store once a second.

Pricing happens on the request path (the response's `x-router-cost-usd` needs it) and costs a few
multiplications; writing to SQLite or Redis happens off it, in one batch per flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from router.clients import api, client_family
from router.config import LedgerConfig
from router.ledger.pricing import Pricer
from router.ledger.records import CLIENT_PREFIX, GRANULARITIES, CostRecord, Row, fold
from router.ledger.stats import choose_granularity, parse_window, summarize, summarize_clients
from router.ledger.stores import LedgerStore
from router.types import RequestContext, Served, Usage

log = logging.getLogger(__name__)
OTHER_TENANT = "other"
NO_TENANT = "-"


class Ledger:
    def __init__(self, store: LedgerStore, config: LedgerConfig, flush_interval_s: float = 1.0) -> None:
        self.store = store
        self._config = config
        self._flush_interval_s = flush_interval_s
        self._pending: list[CostRecord] = []
        self._tenants: set[str] = set()
        self._pricer: Pricer | None = None
        self._priced = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def use_pricer(self, pricer: Pricer) -> None:
        self._pricer = pricer
        self._priced.set()

    @property
    def ready(self) -> bool:
        return self._pricer is not None

    @property
    def reference_model(self) -> str | None:
        return self._pricer.reference_model if self._pricer else None

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="ledger-flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        await self.store.close()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                await self.flush()
            except Exception:
                log.exception("ledger flush failed; %d records kept for the next try", len(self._pending))

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self.store.add(fold(batch))
        except BaseException:
            self._pending = batch + self._pending
            raise

    # -- recording ---------------------------------------------------------------------------------

    def tenant_of(self, ctx: RequestContext) -> str:
        """The API key's tenant, else the tenant header; past `max_tenants` distinct ones, `other`."""
        tenant = ctx.tenant or ctx.headers.get(self._config.tenant_header.lower()) or NO_TENANT
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) >= self._config.max_tenants:
            return OTHER_TENANT
        self._tenants.add(tenant)
        return tenant

    async def price(
        self, ctx: RequestContext, served: Served, usage: Usage | None, latency_ms: float, status: int
    ) -> CostRecord:
        if self._pricer is None:
            await self._priced.wait()
        assert self._pricer is not None
        # Cost and counterfactual from the same facts whatever the status: a stream the client abandoned is
        # priced on both sides at the tokens it got, so it shows as what it saved, not as a loss.
        usage = usage or Usage()
        cost = 0.0 if served.route == "cache" else self._pricer.cost(served.model, usage, latency_ms / 1000)
        if ctx.kind == "embeddings":
            counterfactual = cost if served.route == "cloud" else self._pricer.embedding_counterfactual(usage)
        else:
            counterfactual = self._pricer.counterfactual(usage)
        return CostRecord(
            at=time.time(),
            route=served.route,
            model=served.model,
            rule=served.decision.reason,
            tenant=self.tenant_of(ctx),
            status=status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            counterfactual_usd=counterfactual,
            latency_ms=latency_ms,
            fallback=served.fallback,
            client=client_family(ctx),
            api=api(ctx),
        )

    def add(self, record: CostRecord) -> None:
        self._pending.append(record)

    # -- reading -----------------------------------------------------------------------------------

    @property
    def pricer(self) -> Pricer | None:
        return self._pricer

    async def read_window(self, window: str = "24h", now: float | None = None) -> LedgerWindow:
        """The aggregate rows of a window, read once for the savings and the quality beside them."""
        await self.flush()
        window_s = parse_window(window)
        until = now if now is not None else time.time()
        since = until - window_s
        granularity = choose_granularity(window_s)
        size = GRANULARITIES[granularity]
        start = int(since // size) * size
        rows = await self.store.query(granularity, start, int(until))
        by_client = await self.store.query(CLIENT_PREFIX + granularity, start, int(until))
        return LedgerWindow(window, [row for row in rows if row.bucket + size > since], granularity, since, until,
                            [row for row in by_client if row.bucket + size > since])  # fmt: skip

    def summary(self, view: LedgerWindow) -> dict[str, Any]:
        """The savings story of a window's rows, as the dashboard shows it."""
        story = summarize(view.rows, view.window, view.granularity, view.since, view.until, self.reference_model)
        return {**story, "clients": summarize_clients(view.client_rows)}

    async def stats(self, window: str = "24h", now: float | None = None) -> dict[str, Any]:
        """The savings story for a window (`15m`, `1h`, `24h`, `7d`, ...), as the dashboard shows it."""
        return self.summary(await self.read_window(window, now))


@dataclass(frozen=True, slots=True)
class LedgerWindow:
    window: str
    rows: list[Row]
    granularity: str
    since: float
    until: float
    client_rows: list[Row] = field(default_factory=list)
    """The same window's by-client rows: route, client program (`model` slot), API (`rule` slot), tenant."""
