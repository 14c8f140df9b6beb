"""Closing every request: priced in the ledger, then told to whoever keeps account of it.

Streamed, cached, refused and failed requests included. The recorder prices the request once (the
ledger's `CostRecord`), then hands the same facts to each of its observers, one job each:
- `SpendCounter`: counts the spend against its key's and team's budgets;
- `SessionMemory`: remembers conversations a cloud model answered (`session: sticky`);
- `ShadowSampler`: offers the answer to the shadow evaluator, which keeps a sample for judging later;
- `RequestMetrics`: the Prometheus counters and histograms;
- `RequestLog`: one log line per request.
An observer that fails is logged and counted; it never turns an answer into an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from router.clients import api, client_family
from router.ledger import CostRecord, Ledger
from router.limits import Limiter
from router.metrics import Metrics
from router.quality.shadow import ShadowEvaluator
from router.sessions import Sessions
from router.types import NOTHING_FOUND, Findings, RequestContext, Served, Usage

log = logging.getLogger("router.requests")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request ended, for the record."""

    status: int
    latency_ms: float
    usage: Usage | None = None
    ttft_ms: float | None = None
    """Time to the first token: the first delta of a stream, the whole answer otherwise."""
    answer: str | None = None
    """The answer's text, for shadow evaluation."""


@dataclass(frozen=True, slots=True)
class Closed:
    """Everything known of a finished request: what was asked, found, served, how it ended, what it cost."""

    ctx: RequestContext
    found: Findings
    served: Served
    outcome: Outcome
    record: CostRecord | None


class Observer(Protocol):
    async def closed(self, request: Closed) -> None: ...


class RequestRecorder:
    """Prices every finished request in the ledger, then tells each observer."""

    def __init__(self, ledger: Ledger | None = None, observers: tuple[Observer, ...] = ()) -> None:
        self._ledger = ledger
        self._observers = observers

    async def record(
        self, ctx: RequestContext, served: Served, outcome: Outcome, found: Findings = NOTHING_FOUND
    ) -> CostRecord | None:
        record = None
        if self._ledger is not None:
            record = await self._ledger.price(ctx, served, outcome.usage, outcome.latency_ms, outcome.status)
            self._ledger.add(record)
        closed = Closed(ctx, found, served, outcome, record)
        for observer in self._observers:
            try:
                await observer.closed(closed)
            except Exception:  # the answer is out; keeping account of it must not turn it into an error
                log.exception("request %s: %s failed", ctx.request_id, type(observer).__name__)
        return record


class SpendCounter:
    """Counts what a request cost (and the tokens it generated) against its key's and team's budgets."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def closed(self, request: Closed) -> None:
        if request.record is None:
            return
        usage = request.outcome.usage
        tokens = usage.completion_tokens if usage and request.served.route != "cache" else 0
        await self._limiter.spend(request.ctx, request.record.cost_usd, tokens)


class SessionMemory:
    """Remembers a conversation a cloud model answered, for policies with `session: sticky`."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def closed(self, request: Closed) -> None:
        if request.outcome.status == 200:
            await self._sessions.remember(request.ctx, request.served)


class ShadowSampler:
    """Offers answered requests to the shadow evaluator (`shadow:` in the config)."""

    def __init__(self, shadow: ShadowEvaluator) -> None:
        self._shadow = shadow

    async def closed(self, request: Closed) -> None:
        if request.record is not None:
            o = request.outcome
            self._shadow.offer(request.ctx, request.found, request.served, o.answer, o.status, request.record.tenant)


class RequestMetrics:
    """Counts the request in the Prometheus metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def closed(self, request: Closed) -> None:
        o = request.outcome
        self._metrics.observe_request(request.served, o.status, o.latency_ms, o.ttft_ms, o.usage, request.record)
        ctx = request.ctx
        saved = request.record.savings_usd if request.record is not None else 0.0
        self._metrics.observe_client(client_family(ctx), api(ctx), request.served, o.usage, saved)


class RequestLog:
    """One log line per request: where it went, why, what it cost."""

    async def closed(self, request: Closed) -> None:
        served, outcome, record, usage = request.served, request.outcome, request.record, request.outcome.usage
        log.info(
            "request_id=%s route=%s model=%s reason=%s fallback=%s cache=%s status=%d latency_ms=%.1f "
            "prompt_tokens=%s completion_tokens=%s cost_usd=%s saved_usd=%s",
            request.ctx.request_id,
            served.route,
            served.model,
            served.decision.reason,
            served.fallback or "-",
            served.cache,
            outcome.status,
            outcome.latency_ms,
            usage.prompt_tokens if usage else "-",
            usage.completion_tokens if usage else "-",
            f"{record.cost_usd:.8f}" if record else "-",
            f"{record.savings_usd:.8f}" if record else "-",
        )


def observers_for(
    metrics: Metrics | None = None,
    limiter: Limiter | None = None,
    sessions: Sessions | None = None,
    shadow: ShadowEvaluator | None = None,
) -> tuple[Observer, ...]:
    """The observers a gateway with these components has, in the order they are told."""
    chosen: list[Observer] = []
    if limiter is not None:
        chosen.append(SpendCounter(limiter))
    if sessions is not None:
        chosen.append(SessionMemory(sessions))
    if shadow is not None:
        chosen.append(ShadowSampler(shadow))
    if metrics is not None:
        chosen.append(RequestMetrics(metrics))
    chosen.append(RequestLog())
    return tuple(chosen)
