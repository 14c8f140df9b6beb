"""The confidence cascade: the local model answers first; when it was not sure, the cloud answers instead.

A policy rule with `cascade:` (and a route that comes out `local`) sets `Decision.cascade`. The local
backend then measures its confidence while it generates (`backends/confidence.py`), and the answer is
kept or replaced by the cloud's. If the cloud cannot answer, the local answer already in hand is
returned (`x-router-cascade: escalation-failed`) rather than an error.

Streaming: the local answer is generated in full before anything is sent (its confidence is only known
at the end), then either replayed as a stream or replaced by the cloud's stream. The client's time to
first token is therefore the local generation's whole duration; that is the price of a streamed cascade,
stated in the README.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from router import tracing
from router.errors import RouterError
from router.resilience import Executor
from router.routing import Router
from router.types import Completion, Confidence, Decision, RequestContext, Served, StreamDelta

log = logging.getLogger(__name__)


class CascadingExecutor:
    """Runs a decision through the executor; a decision that carries a cascade may be run twice."""

    def __init__(self, executor: Executor, router: Router) -> None:
        self._executor = executor
        self._router = router

    @staticmethod
    def _verdict(decision: Decision, served: Served, confidence: Confidence | None) -> tuple[bool, float] | None:
        """(escalate?, the metric's value), or None when there is nothing to judge (a fallback answered)."""
        if decision.cascade is None or served.route != "local" or served.fallback or confidence is None:
            return None
        return decision.cascade.escalate(confidence), confidence.value(decision.cascade.metric)

    def _without_unreachable_cascade(self, decision: Decision) -> Decision:
        """No cloud model could take an escalation now (no key, not configured): answer as if there were
        no cascade, so a stream is not held back for a second opinion that cannot come."""
        if decision.cascade is None or self._executor.can_reach(self._router.escalated(decision)):
            return decision
        return replace(decision, cascade=None)

    async def complete(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float
    ) -> tuple[Completion, Served]:
        decision = self._without_unreachable_cascade(decision)
        if decision.cascade is None:
            return await self._executor.complete(ctx, decision, max_tokens, deadline)
        completion, served = await self._executor.complete(ctx, decision, max_tokens, deadline, confidence=True)
        verdict = self._verdict(decision, served, completion.confidence)
        if verdict is None:
            return completion, served
        escalate, value = verdict
        if not escalate:
            return completion, replace(served, cascade="kept", confidence=value)
        try:
            cloud = self._router.escalated(decision)
            with tracing.span("router.cascade", **{"router.cascade.metric": decision.cascade.metric,
                                                   "router.cascade.value": value}):  # fmt: skip
                better, by_cloud = await self._executor.complete(ctx, cloud, max_tokens, deadline)
        except RouterError as exc:
            log.warning("request %s: cascade to the cloud failed (%s); the local answer stands", ctx.request_id, exc)
            return completion, replace(served, cascade="escalation-failed", confidence=value)
        return better, replace(by_cloud, cascade="escalated", confidence=value)

    async def stream(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float
    ) -> tuple[AsyncIterator[StreamDelta], Served]:
        decision = self._without_unreachable_cascade(decision)
        if decision.cascade is None:
            return await self._executor.stream(ctx, decision, max_tokens, deadline)
        deltas, served = await self._executor.stream(ctx, decision, max_tokens, deadline, confidence=True)
        if served.route != "local" or served.fallback:
            return deltas, served
        buffered = [delta async for delta in deltas]  # confidence is known only once the answer is whole
        confidence = next((d.confidence for d in reversed(buffered) if d.confidence is not None), None)
        verdict = self._verdict(decision, served, confidence)
        if verdict is None:
            return _replay(buffered), served
        escalate, value = verdict
        if not escalate:
            return _replay(buffered), replace(served, cascade="kept", confidence=value)
        try:
            cloud = self._router.escalated(decision)
            with tracing.span("router.cascade", **{"router.cascade.metric": decision.cascade.metric,
                                                   "router.cascade.value": value}):  # fmt: skip
                better, by_cloud = await self._executor.stream(ctx, cloud, max_tokens, deadline)
        except RouterError as exc:
            log.warning("request %s: cascade to the cloud failed (%s); the local answer stands", ctx.request_id, exc)
            return _replay(buffered), replace(served, cascade="escalation-failed", confidence=value)
        return better, replace(by_cloud, cascade="escalated", confidence=value)


async def _replay(deltas: Sequence[StreamDelta]) -> AsyncIterator[StreamDelta]:
    for delta in deltas:
        yield delta
