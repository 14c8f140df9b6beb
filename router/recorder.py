"""Closing every request: priced in the ledger, counted against budgets, metrics and one log line.

Streamed, cached and failed requests included. For policies with sticky sessions it also remembers
conversations a cloud model answered (`router/sessions.py`); with shadowing on it offers each answer to
the shadow evaluator, which keeps a sample for judging later (`router/quality/shadow.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from router.ledger import CostRecord, Ledger
from router.limits import Limiter
from router.metrics import Metrics
from router.quality.shadow import ShadowEvaluator
from router.sessions import Sessions
from router.types import RequestContext, Served, Usage

log = logging.getLogger("router.requests")


class RecordStage(Protocol):
    async def record(self, ctx: RequestContext, served: Served, outcome: Outcome) -> CostRecord | None: ...


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


class RequestRecorder:
    """Closes every request: prices it in the ledger, counts it in the metrics, writes one log line."""

    def __init__(
        self,
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        limiter: Limiter | None = None,
        sessions: Sessions | None = None,
        shadow: ShadowEvaluator | None = None,
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._limiter = limiter
        self.sessions = sessions
        """Remembers conversations a cloud model answered, for policies with `session: sticky`."""
        self.shadow = shadow
        """Takes a sample of answered requests for shadow evaluation (`shadow:` in the config)."""

    async def record(self, ctx: RequestContext, served: Served, outcome: Outcome) -> CostRecord | None:
        record = None
        if self._ledger is not None:
            record = await self._ledger.price(ctx, served, outcome.usage, outcome.latency_ms, outcome.status)
            self._ledger.add(record)
        if self._limiter is not None and record is not None:
            tokens = outcome.usage.completion_tokens if outcome.usage and served.route != "cache" else 0
            try:
                await self._limiter.spend(ctx, record.cost_usd, tokens)
            except Exception:  # the answer is out; a counting failure must not turn it into an error
                log.exception("request %s: could not count its spend", ctx.request_id)
        if self.sessions is not None and outcome.status == 200:
            await self.sessions.remember(ctx, served)
        if self.shadow is not None and record is not None:
            self.shadow.offer(ctx, served, outcome.answer, outcome.status, record.tenant)
        if self._metrics is not None:
            self._metrics.observe_request(
                served, outcome.status, outcome.latency_ms, outcome.ttft_ms, outcome.usage, record
            )
        usage = outcome.usage
        log.info(
            "request_id=%s route=%s model=%s reason=%s fallback=%s cache=%s status=%d latency_ms=%.1f "
            "prompt_tokens=%s completion_tokens=%s cost_usd=%s saved_usd=%s",
            ctx.request_id,
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
        return record
