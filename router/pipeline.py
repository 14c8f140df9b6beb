"""The request path: admit → facts → decide → cache lookup → execute → cache store → record.

This is the one place to read to know what happens to a request. Deciding (admission, the facts the
policy reads, the decision) is `Decider.decide` (`router/deciding.py`), the same function that
`/v1/router/explain`, `router route --explain` and `router policy test|diff` call with `dry_run=True`.
The cache is asked after the decision, not before it as DESIGN.md first drew it: its key includes the
model the route chose, and the matching rule says whether and how to cache (deciding costs a fraction of
a millisecond). A hit skips the models; a fresh answer is stored once complete, unless a fallback model
gave it (a degraded answer must not outlive the outage). The recorder closes every request, streamed,
cached, refused and failed ones included. Admission (rate limits, budget state) comes first, so a
refused request costs nothing; a rule's `deny` is answered right after the decision, before the cache.
Embeddings take the same path without the policy: admission, the executor, the recorder.

Built once by the app factory, with every component it uses; nothing is assigned to it afterwards. A
reloaded policy is a new `PolicyEngine` swapped into the router in one assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from router import tracing
from router.cache import BYPASS, CachedAnswer, CacheLookup, ResponseCache
from router.cascade import CascadingExecutor
from router.classify.embedding_service import EmbeddingService
from router.classify.scorer import EscalationScorer
from router.deciding import Assumed, Decider
from router.errors import PolicyDenied, RouterError
from router.explain import explanation_dict
from router.ledger import CostRecord
from router.limits import Limiter
from router.recorder import Outcome, RequestRecorder
from router.resilience import Executor
from router.routing import Router
from router.tokens import TokenCounter
from router.types import Completion, Decision, Findings, RequestContext, Served, StreamDelta, Usage

log = logging.getLogger("router.requests")


@dataclass(frozen=True, slots=True)
class StreamResult:
    served: Served
    deltas: AsyncIterator[StreamDelta]


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: list[Any]
    usage: Usage
    served: Served


class Pipeline:
    def __init__(
        self,
        decider: Decider,
        executor: Executor,
        tokens: TokenCounter,
        request_timeout_s: float,
        recorder: RequestRecorder | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.decider = decider
        self._executor = executor
        self._cascading = CascadingExecutor(executor, decider.router)
        self.tokens = tokens
        self._request_timeout_s = request_timeout_s
        self._recorder = recorder or RequestRecorder()
        self.cache = cache

    # What other components read (the operational endpoints, the reload watcher, the CLI).
    @property
    def router(self) -> Router:
        return self.decider.router

    @property
    def embeddings(self) -> EmbeddingService | None:
        return self.decider.embeddings

    @property
    def scorer(self) -> EscalationScorer | None:
        return self.decider.scorer

    @property
    def limiter(self) -> Limiter | None:
        return self.decider.limiter

    def prepare(self, ctx: RequestContext) -> RequestContext:
        """Fill in what the stages need that the client did not send (the prompt's token count)."""
        if ctx.kind == "embeddings":
            return replace(ctx, prompt_tokens=sum(self.tokens.count(text) for text in ctx.inputs))
        return replace(ctx, prompt_tokens=self.tokens.count_messages(ctx.messages))

    async def explain(self, ctx: RequestContext, assumed: Assumed | None = None) -> dict[str, Any]:
        """Where this request would go and why: the stages the HTTP path runs, as a dry run (nothing counted
        against limits, no model called). `/v1/router/explain`, `router route` and policy tests call it."""
        ctx = self.prepare(ctx)
        told = explanation_dict(ctx, await self.decider.decide(ctx, dry_run=True, assumed=assumed))
        if self.scorer is not None and self.router.policy.policy.uses_classifier:
            told["classifier"] = self.scorer.describe()
        return told

    async def routed(self, ctx: RequestContext) -> tuple[Findings, Decision, CacheLookup]:
        """Admit, find, decide, and ask the cache: everything that happens before a model is called."""
        decided = await self.decider.decide(ctx)
        found, decision = decided.found, decided.decision
        if decision.deny is not None:
            deny = decision.deny
            raise _Refused(decision, PolicyDenied(deny.message, deny.status, code=deny.code))
        if self.cache is None:
            return found, decision, BYPASS

        async def embed() -> object:
            nonlocal found
            found = await self.decider.embedding(ctx, found)
            return found.embedding

        with tracing.span("router.cache.lookup") as span:
            lookup = await self.cache.lookup(ctx, decision, embed)
            if span is not None:
                tracing.annotate(span, **{"router.cache": lookup.status})
        return found, decision, lookup

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

    @staticmethod
    def _from_cache(decision: Decision, lookup: CacheLookup, answer: CachedAnswer) -> Served:
        return Served(decision, answer.served_by, "cache", cache=lookup.status, similarity=lookup.similarity)

    async def _keep(self, lookup: CacheLookup, served: Served, completion: Completion) -> None:
        # A provider's own answer (thinking signatures, reasoning items) is not what a replay could give back.
        if self.cache is None or not lookup.store or served.fallback is not None or served.native:
            return
        try:
            await self.cache.keep(lookup, completion, served.model)
        except Exception:  # the answer is ready: failing to cache it must not lose it
            log.exception("request: could not cache the answer")

    async def _routed_or_refused(self, ctx: RequestContext, started: float) -> tuple[Findings, Decision, CacheLookup]:
        """`routed`, recording a request refused by a limit or a `deny` rule before the error goes out."""
        try:
            return await self.routed(ctx)
        except _Refused as refused:
            await self._record_failure(ctx, refused.decision, refused.error, started, BYPASS.status)
            raise refused.error from None
        except RouterError as exc:
            decision = self.router.refusal(exc.code or "refused")
            await self._record_failure(ctx, decision, exc, started, BYPASS.status)
            raise

    async def complete(self, ctx: RequestContext) -> tuple[Completion, Served]:
        if not tracing.enabled():
            return await self._complete(ctx)
        with tracing.span("router.request", **_request_attributes(ctx)) as span:
            completion, served = await self._complete(ctx)
            tracing.annotate(span, **_served_attributes(served))
            return completion, served

    async def _complete(self, ctx: RequestContext) -> tuple[Completion, Served]:
        started = time.perf_counter()
        found, decision, lookup = await self._routed_or_refused(ctx, started)
        if lookup.answer is not None:
            served = self._from_cache(decision, lookup, lookup.answer)
            elapsed_ms = _ms_since(started)
            outcome = Outcome(200, elapsed_ms, lookup.answer.usage, elapsed_ms, lookup.answer.content)
            record = await self._recorder.record(ctx, served, outcome, found)
            return lookup.answer.completion(), _with_cost(served, record)
        try:
            completion, served = await self._cascading.complete(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started, lookup.status)
            raise
        served = replace(served, cache=lookup.status)
        await self._keep(lookup, served, completion)
        elapsed_ms = _ms_since(started)
        outcome = Outcome(200, elapsed_ms, completion.usage, elapsed_ms, completion.content)
        record = await self._recorder.record(ctx, served, outcome, found)
        return completion, _with_cost(served, record)

    async def stream(self, ctx: RequestContext) -> StreamResult:
        if not tracing.enabled():
            return await self._stream(ctx)
        span = tracing.start("router.request", **_request_attributes(ctx))
        try:
            with tracing.current(span):
                result = await self._stream(ctx)
        except RouterError as exc:
            tracing.finish(span, exc.status_code)
            raise
        tracing.annotate(span, **_served_attributes(result.served))
        return StreamResult(result.served, _ended_with(span, result.deltas))

    async def _stream(self, ctx: RequestContext) -> StreamResult:
        started = time.perf_counter()
        found, decision, lookup = await self._routed_or_refused(ctx, started)
        if lookup.answer is not None:
            served = self._from_cache(decision, lookup, lookup.answer)
            deltas = _replay(lookup.answer)
            return StreamResult(served, self._observe(ctx, found, served, deltas, started, _ms_since(started), BYPASS))
        try:
            deltas, served = await self._cascading.stream(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started, lookup.status)
            raise
        served = replace(served, cache=lookup.status)
        return StreamResult(served, self._observe(ctx, found, served, deltas, started, _ms_since(started), lookup))

    async def embed(self, ctx: RequestContext, extra: Mapping[str, Any]) -> Embedded:
        """Embeddings of `ctx.inputs` by the model the client named: admitted against the limits, run by
        the executor (timeouts, retries, breaker), recorded in the ledger and metrics like any request."""
        started = time.perf_counter()
        decision = self.router.embedding_decision(ctx.requested_model)
        try:
            if self.limiter is not None:
                await self.limiter.admit(ctx)
            (vectors, tokens), served = await self._executor.embed(ctx, decision, self._deadline(ctx, started), extra)
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started, BYPASS.status)
            raise
        usage = Usage(tokens or ctx.prompt_tokens, 0)
        elapsed_ms = _ms_since(started)
        record = await self._recorder.record(ctx, served, Outcome(200, elapsed_ms, usage, elapsed_ms))
        return Embedded(vectors, usage, _with_cost(served, record))

    async def _record_failure(
        self, ctx: RequestContext, decision: Decision, exc: RouterError, started: float, cache: str
    ) -> None:
        served = Served(decision=decision, model=decision.model, route=decision.route, cache=cache)
        await self._recorder.record(ctx, served, Outcome(exc.status_code, _ms_since(started)))

    async def _observe(
        self,
        ctx: RequestContext,
        found: Findings,
        served: Served,
        deltas: AsyncIterator[StreamDelta],
        started: float,
        ttft_ms: float,
        lookup: CacheLookup,
    ) -> AsyncIterator[StreamDelta]:
        """Pass deltas through; once the stream ends, store the whole answer and record the request."""
        usage = None
        status = 499  # a client that went away mid-stream, as nginx counts it
        parts: list[str] = []
        finish: str | None = None
        model = served.model
        storable = lookup.store and not served.native
        try:
            async for delta in deltas:
                usage = delta.usage or usage
                parts.append(delta.content or "")
                if storable:
                    finish = delta.finish_reason or finish
                    model = delta.model or model
                    storable = not delta.delta_extra  # tool-call fragments are not reassembled for the cache
                yield delta
            status = 200
            if storable:
                completion = Completion("".join(parts), finish, usage or Usage(), model)
                await self._keep(lookup, served, completion)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except RouterError as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 502
            raise
        finally:
            if usage is None and parts:  # ended early: price what was streamed, as the provider bills it
                usage = Usage(ctx.prompt_tokens, self.tokens.count("".join(parts)))
            outcome = Outcome(status, _ms_since(started), usage, ttft_ms, "".join(parts) if status == 200 else None)
            await self._recorder.record(ctx, served, outcome, found)


def _request_attributes(ctx: RequestContext) -> dict[str, object]:
    return {"router.request_id": ctx.request_id, "gen_ai.request.model": ctx.requested_model,
            "router.stream": ctx.stream, "router.tenant": ctx.tenant}  # fmt: skip


def _served_attributes(served: Served) -> dict[str, object]:
    return {
        "router.route": served.route,
        "router.model": served.model,
        "router.reason": served.decision.reason,
        "router.cache": served.cache,
        "router.fallback": served.fallback,
        "router.cascade": served.cascade,
    }


async def _ended_with(span: object, deltas: AsyncIterator[StreamDelta]) -> AsyncIterator[StreamDelta]:
    """A stream whose request span ends when the stream does."""
    status = 499
    try:
        async for delta in deltas:
            yield delta
        status = 200
    except RouterError as exc:
        status = exc.status_code
        raise
    finally:
        tracing.finish(span, status)


class _Refused(Exception):
    """A decision that refuses the request (`deny`), carried out of `routed` with the error to send."""

    def __init__(self, decision: Decision, error: RouterError) -> None:
        self.decision = decision
        self.error = error


REPLAY_CHUNK_CHARS = 64


async def _replay(answer: CachedAnswer) -> AsyncIterator[StreamDelta]:
    """A cached answer as a stream: its text in pieces, then the finish reason and usage."""
    text = answer.content or ""
    for start in range(0, len(text), REPLAY_CHUNK_CHARS):
        yield StreamDelta(content=text[start : start + REPLAY_CHUNK_CHARS], model=answer.model)
    if answer.message_extra:
        extra = dict(answer.message_extra)
        if isinstance(extra.get("tool_calls"), list):  # streamed tool calls carry their position
            extra["tool_calls"] = [{"index": i, **call} for i, call in enumerate(extra["tool_calls"])]
        yield StreamDelta(delta_extra=extra, model=answer.model)
    yield StreamDelta(finish_reason=answer.finish_reason, usage=answer.usage, model=answer.model)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _with_cost(served: Served, record: CostRecord | None) -> Served:
    if record is None:
        return served
    return replace(served, cost_usd=record.cost_usd, saved_usd=record.savings_usd)
