"""The request path, in the order DESIGN.md draws it: (cache →) decide → execute → record.

This is the one place to read to know what happens to a request. Each stage is a component handed in
by the app factory. The cache stage plugs in before `decide` (a hit skips the rest) and after a
completed answer; the recorder (a log line now, the priced ledger later) closes every request, the
streamed ones included, through the `RecordStage` protocol below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Protocol

from router.metrics import Metrics
from router.resilience import Executor
from router.routing import Router
from router.tokens import TokenCounter
from router.types import Completion, Decision, RequestContext, Served, StreamDelta

log = logging.getLogger("router.requests")


class RecordStage(Protocol):
    async def record(
        self,
        ctx: RequestContext,
        served: Served,
        completion: Completion | None,
        latency_ms: float,
        status: int,
    ) -> None: ...


class LogRecorder:
    """Until the ledger lands: one structured log line and the request metrics per request."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics

    async def record(
        self,
        ctx: RequestContext,
        served: Served,
        completion: Completion | None,
        latency_ms: float,
        status: int,
    ) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(served.route, served.model, str(status)).inc()
            self._metrics.latency.labels(served.route).observe(latency_ms / 1000)
        usage = completion.usage if completion else None
        log.info(
            "request_id=%s route=%s model=%s reason=%s fallback=%s status=%d latency_ms=%.1f "
            "prompt_tokens=%s completion_tokens=%s",
            ctx.request_id,
            served.route,
            served.model,
            served.decision.reason,
            served.fallback or "-",
            status,
            latency_ms,
            usage.prompt_tokens if usage else "-",
            usage.completion_tokens if usage else "-",
        )


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
    ) -> None:
        self.router = router
        self._executor = executor
        self._tokens = tokens
        self._request_timeout_s = request_timeout_s
        self._recorder = recorder or LogRecorder()

    def prepare(self, ctx: RequestContext) -> RequestContext:
        """Fill in what the stages need that the client did not send (the prompt's token count)."""
        return replace(ctx, prompt_tokens=self._tokens.count_messages(ctx.messages))

    def decide(self, ctx: RequestContext) -> Decision:
        return self.router.decide(ctx)

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
        decision = self.decide(ctx)
        completion, served = await self._executor.complete(
            ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
        )
        await self._recorder.record(ctx, served, completion, (time.perf_counter() - started) * 1000, 200)
        return completion, served

    async def stream(self, ctx: RequestContext) -> StreamResult:
        started = time.perf_counter()
        decision = self.decide(ctx)
        deltas, served = await self._executor.stream(
            ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
        )
        return StreamResult(served, self._observe(ctx, served, deltas, started))

    async def _observe(
        self, ctx: RequestContext, served: Served, deltas: AsyncIterator[StreamDelta], started: float
    ) -> AsyncIterator[StreamDelta]:
        """Pass deltas through; once the stream ends, assemble the answer for the record."""
        parts: list[str] = []
        finish: str | None = None
        usage = None
        status = 499  # a client that went away mid-stream, as nginx counts it
        try:
            async for delta in deltas:
                if delta.content:
                    parts.append(delta.content)
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
                yield delta
            status = 200
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            status = 502
            raise
        finally:
            completion = Completion("".join(parts), finish, usage, served.model) if usage else None
            await self._recorder.record(ctx, served, completion, (time.perf_counter() - started) * 1000, status)
