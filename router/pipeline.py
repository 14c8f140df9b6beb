"""The request path, in the order DESIGN.md draws it: (cache →) decide → execute → record.

This is the one place to read to know what happens to a request. Each stage is a component handed in
by the app factory. The cache stage plugs in before `decide` (a hit skips the rest) and after a
completed answer; the recorder closes every request, streamed and failed ones included: it prices it
in the ledger, counts it in the metrics and writes its log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Protocol

from router.classify.scorer import EscalationScorer
from router.errors import RouterError
from router.ledger import CostRecord, Ledger
from router.metrics import Metrics
from router.resilience import Executor
from router.routing import Router
from router.tokens import TokenCounter
from router.types import Completion, Decision, RequestContext, Served, StreamDelta, Usage

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


class RequestRecorder:
    """Closes every request: prices it in the ledger, counts it in the metrics, writes one log line."""

    def __init__(self, ledger: Ledger | None = None, metrics: Metrics | None = None) -> None:
        self._ledger = ledger
        self._metrics = metrics

    async def record(self, ctx: RequestContext, served: Served, outcome: Outcome) -> CostRecord | None:
        record = None
        if self._ledger is not None:
            record = await self._ledger.price(ctx, served, outcome.usage, outcome.latency_ms, outcome.status)
            self._ledger.add(record)
        if self._metrics is not None:
            self._metrics.observe_request(
                served, outcome.status, outcome.latency_ms, outcome.ttft_ms, outcome.usage, record
            )
        usage = outcome.usage
        log.info(
            "request_id=%s route=%s model=%s reason=%s fallback=%s status=%d latency_ms=%.1f "
            "prompt_tokens=%s completion_tokens=%s cost_usd=%s saved_usd=%s",
            ctx.request_id,
            served.route,
            served.model,
            served.decision.reason,
            served.fallback or "-",
            outcome.status,
            outcome.latency_ms,
            usage.prompt_tokens if usage else "-",
            usage.completion_tokens if usage else "-",
            f"{record.cost_usd:.8f}" if record else "-",
            f"{record.savings_usd:.8f}" if record else "-",
        )
        return record


@dataclass(frozen=True, slots=True)
class StreamResult:
    served: Served
    deltas: AsyncIterator[StreamDelta]


class Pipeline:
    def __init__(
        self,
        router: Router,
        executor: Executor,
        tokens: TokenCounter,
        request_timeout_s: float,
        recorder: RecordStage | None = None,
        scorer: EscalationScorer | None = None,
    ) -> None:
        self.router = router
        self._executor = executor
        self._tokens = tokens
        self._request_timeout_s = request_timeout_s
        self._recorder = recorder or RequestRecorder()
        self.scorer = scorer

    def prepare(self, ctx: RequestContext) -> RequestContext:
        """Fill in what the stages need that the client did not send (the prompt's token count)."""
        return replace(ctx, prompt_tokens=self._tokens.count_messages(ctx.messages))

    def decide(self, ctx: RequestContext) -> Decision:
        return self.router.decide(ctx)

    async def scored(self, ctx: RequestContext) -> RequestContext:
        """Add the classifier's escalation score, once, when the policy routes anything `auto`."""
        if self.scorer is None or not self.router.policy.policy.uses_classifier or "escalation" in ctx.scores:
            return ctx
        score = await self.scorer.score(ctx.last_user_text()[:4000])
        return ctx if score is None else replace(ctx, scores={**ctx.scores, "escalation": score})

    def _deadline(self, ctx: RequestContext, started: float) -> float:
        """The request's deadline on the monotonic clock: the server's bound, or the client's if sooner."""
        budget = self._request_timeout_s if ctx.timeout_s is None else min(ctx.timeout_s, self._request_timeout_s)
        return started + budget

    @staticmethod
    def _max_tokens(ctx: RequestContext, decision: Decision) -> int | None:
        requested = ctx.params.get("max_tokens")
        cap = decision.max_tokens_cap
        if cap is None:
            return requested
        return cap if requested is None else min(requested, cap)

    async def complete(self, ctx: RequestContext) -> tuple[Completion, Served]:
        started = time.perf_counter()
        ctx = await self.scored(ctx)
        decision = self.decide(ctx)
        try:
            completion, served = await self._executor.complete(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started)
            raise
        elapsed_ms = _ms_since(started)
        record = await self._recorder.record(ctx, served, Outcome(200, elapsed_ms, completion.usage, elapsed_ms))
        return completion, _with_cost(served, record)

    async def stream(self, ctx: RequestContext) -> StreamResult:
        started = time.perf_counter()
        ctx = await self.scored(ctx)
        decision = self.decide(ctx)
        try:
            deltas, served = await self._executor.stream(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started)
            raise
        return StreamResult(served, self._observe(ctx, served, deltas, started, ttft_ms=_ms_since(started)))

    async def _record_failure(self, ctx: RequestContext, decision: Decision, exc: RouterError, started: float) -> None:
        served = Served(decision=decision, model=decision.model, route=decision.route)
        await self._recorder.record(ctx, served, Outcome(exc.status_code, _ms_since(started)))

    async def _observe(
        self,
        ctx: RequestContext,
        served: Served,
        deltas: AsyncIterator[StreamDelta],
        started: float,
        ttft_ms: float,
    ) -> AsyncIterator[StreamDelta]:
        """Pass deltas through; once the stream ends, record it with the usage it reported."""
        usage = None
        status = 499  # a client that went away mid-stream, as nginx counts it
        try:
            async for delta in deltas:
                usage = delta.usage or usage
                yield delta
            status = 200
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except RouterError as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 502
            raise
        finally:
            await self._recorder.record(ctx, served, Outcome(status, _ms_since(started), usage, ttft_ms))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _with_cost(served: Served, record: CostRecord | None) -> Served:
    if record is None:
        return served
    return replace(served, cost_usd=record.cost_usd, saved_usd=record.savings_usd)
