"""The request path: admit → embed (when needed) → score → decide → cache lookup → execute → cache store → record.

This is the one place to read to know what happens to a request. Each stage is a component handed in
by the app factory. The question is embedded at most once, and only when the classifier or the
semantic cache will use the vector. The cache is asked after the decision, not before it as DESIGN.md
first drew it: its key includes the model the route chose, and the matching rule says whether and how
to cache (deciding costs a fraction of a millisecond). A hit skips the models; a fresh answer is stored
once complete, unless a fallback model gave it (a degraded answer must not outlive the outage). The
recorder closes every request, streamed, cached and failed ones included: it prices it in the ledger,
counts what it spent against its key's and team's budgets, counts it in the metrics and writes its log
line. Admission (rate limits, budget state) comes first, so a refused request costs nothing; a rule's
`deny` is answered right after the decision, before the cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from router import tracing
from router.cache import BYPASS, CachedAnswer, CacheLookup, ResponseCache
from router.cascade import CascadingExecutor
from router.classify.embedding_service import MAX_TEXT_CHARS, EmbeddingService
from router.classify.scorer import EscalationScorer
from router.config import EmbedderConfig
from router.errors import PolicyDenied, RouterError
from router.ledger import CostRecord
from router.limits import Limiter
from router.policy.intents import texts_for as intent_texts
from router.recorder import Outcome, RecordStage, RequestRecorder
from router.resilience import Executor
from router.routing import Router
from router.tokens import TokenCounter
from router.types import Completion, Decision, RequestContext, Served, StreamDelta, Usage

log = logging.getLogger("router.requests")


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
        cache: ResponseCache | None = None,
        embeddings: EmbeddingService | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.router = router
        self._executor = CascadingExecutor(executor, router)
        self.tokens = tokens
        self._request_timeout_s = request_timeout_s
        self._recorder = recorder or RequestRecorder()
        self.sessions = getattr(self._recorder, "sessions", None)
        self.scorer = scorer
        self.cache = cache
        self.embeddings = embeddings or (scorer.embeddings if scorer else None)
        self.limiter = limiter
        self.classifier_input = "last_user"
        """What the classifier reads: `last_user`, or `conversation` (`classifier.input`)."""
        self.embedder_config: EmbedderConfig | None = None
        self.embedder_dir: Path | None = None
        """How to start an embedder later, for a reloaded policy that newly needs one (its intents)."""

    def prepare(self, ctx: RequestContext) -> RequestContext:
        """Fill in what the stages need that the client did not send (the prompt's token count)."""
        return replace(ctx, prompt_tokens=self.tokens.count_messages(ctx.messages))

    def decide(self, ctx: RequestContext) -> Decision:
        return self.router.decide(ctx)

    async def embedded(self, ctx: RequestContext) -> RequestContext:
        """The last user message's embedding, computed once, for whichever stage needs it first."""
        if ctx.embedding is not None or self.embeddings is None:
            return ctx
        vector = await self.embeddings.embed(ctx.last_user_text()[:MAX_TEXT_CHARS])
        return ctx if vector is None else replace(ctx, embedding=vector)

    async def scored(self, ctx: RequestContext) -> RequestContext:
        """Add the classifier's escalation score, once, when the policy routes anything `auto`."""
        if self.scorer is None or not self.router.policy.policy.uses_classifier or "escalation" in ctx.scores:
            return ctx
        text = self.scorer_text(ctx)
        if text is None:  # the last user message: the shared embedding is the input
            ctx = await self.embedded(ctx)
            text = ctx.last_user_text()[:MAX_TEXT_CHARS]
            score = await self.scorer.score(text, ctx.embedding)
        else:
            score = await self.scorer.score(text)
        return ctx if score is None else replace(ctx, scores={**ctx.scores, "escalation": score})

    async def intended(self, ctx: RequestContext) -> RequestContext:
        """Match the policy's intents, once, on each scope a rule names them on. The last user message's
        embedding is the one the cache and classifier share; `conversation` adds the earlier user
        messages (embedded together, in one batch)."""
        policy = self.router.policy
        index = policy.intents
        if index is None or self.embeddings is None or ctx.intents or not policy.needs_intents:
            return ctx
        matches = {}
        for scope in sorted(index.scopes):
            texts = intent_texts(ctx, scope)
            vectors: list[np.ndarray | None] = []
            if texts[0] == ctx.last_user_text():  # the shared embedding
                ctx = await self.embedded(ctx)
                vectors.append(ctx.embedding)
                texts = texts[1:]
            vectors += await asyncio.gather(*(self.embeddings.embed(text[:MAX_TEXT_CHARS]) for text in texts))
            if all(v is not None for v in vectors):
                matches[scope] = index.match_turns([v for v in vectors if v is not None])
        return replace(ctx, intents=matches)

    def scorer_text(self, ctx: RequestContext) -> str | None:
        """The classifier's input when it is not the last user message (None): the recent conversation,
        with `classifier.input: conversation` and more than one turn."""
        turns = sum(1 for m in ctx.messages if m.get("role") in ("user", "assistant"))
        if self.classifier_input != "conversation" or turns < 2:
            return None
        return ctx.conversation_text()[:MAX_TEXT_CHARS]

    async def admitted(self, ctx: RequestContext) -> RequestContext:
        """Rate limits (429 when used up) and the budget state the policy's `budget:` conditions read;
        and, for policies with sticky sessions, whether this conversation went to the cloud before."""
        if self.limiter is not None:
            ctx = await self.limiter.admit(ctx)
        if self.sessions is not None and self.router.policy.uses_sessions:
            ctx = await self.sessions.looked_up(ctx)
        return ctx

    async def routed(self, ctx: RequestContext) -> tuple[RequestContext, Decision, CacheLookup]:
        """Admit, score, decide, and ask the cache: everything that happens before a model is called."""
        with tracing.span("router.decide") as span:
            ctx = await self.scored(await self.intended(await self.admitted(ctx)))
            decision = self.decide(ctx)
            if span is not None:
                tracing.annotate(span, **_decision_attributes(decision))
        if decision.deny is not None:
            deny = decision.deny
            raise _Refused(decision, PolicyDenied(deny.message, deny.status, code=deny.code))
        if self.cache is None:
            return ctx, decision, BYPASS
        embedded = ctx

        async def embed() -> object:
            nonlocal embedded
            embedded = await self.embedded(embedded)
            return embedded.embedding

        with tracing.span("router.cache.lookup") as span:
            lookup = await self.cache.lookup(ctx, decision, embed)
            if span is not None:
                tracing.annotate(span, **{"router.cache": lookup.status})
        return embedded, decision, lookup

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
        if self.cache is None or not lookup.store or served.fallback is not None:
            return
        try:
            await self.cache.keep(lookup, completion, served.model)
        except Exception:  # the answer is ready: failing to cache it must not lose it
            log.exception("request: could not cache the answer")

    async def _routed_or_refused(
        self, ctx: RequestContext, started: float
    ) -> tuple[RequestContext, Decision, CacheLookup]:
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
        ctx, decision, lookup = await self._routed_or_refused(ctx, started)
        if lookup.answer is not None:
            served = self._from_cache(decision, lookup, lookup.answer)
            elapsed_ms = _ms_since(started)
            outcome = Outcome(200, elapsed_ms, lookup.answer.usage, elapsed_ms, lookup.answer.content)
            record = await self._recorder.record(ctx, served, outcome)
            return lookup.answer.completion(), _with_cost(served, record)
        try:
            completion, served = await self._executor.complete(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started, lookup.status)
            raise
        served = replace(served, cache=lookup.status)
        await self._keep(lookup, served, completion)
        elapsed_ms = _ms_since(started)
        outcome = Outcome(200, elapsed_ms, completion.usage, elapsed_ms, completion.content)
        record = await self._recorder.record(ctx, served, outcome)
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
        ctx, decision, lookup = await self._routed_or_refused(ctx, started)
        if lookup.answer is not None:
            served = self._from_cache(decision, lookup, lookup.answer)
            deltas = _replay(lookup.answer)
            return StreamResult(served, self._observe(ctx, served, deltas, started, _ms_since(started), BYPASS))
        try:
            deltas, served = await self._executor.stream(
                ctx, decision, self._max_tokens(ctx, decision), self._deadline(ctx, started)
            )
        except RouterError as exc:
            await self._record_failure(ctx, decision, exc, started, lookup.status)
            raise
        served = replace(served, cache=lookup.status)
        return StreamResult(served, self._observe(ctx, served, deltas, started, _ms_since(started), lookup))

    async def _record_failure(
        self, ctx: RequestContext, decision: Decision, exc: RouterError, started: float, cache: str
    ) -> None:
        served = Served(decision=decision, model=decision.model, route=decision.route, cache=cache)
        await self._recorder.record(ctx, served, Outcome(exc.status_code, _ms_since(started)))

    async def _observe(
        self,
        ctx: RequestContext,
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
        storable = lookup.store
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
            outcome = Outcome(status, _ms_since(started), usage, ttft_ms, "".join(parts) if status == 200 else None)
            await self._recorder.record(ctx, served, outcome)


def _request_attributes(ctx: RequestContext) -> dict[str, object]:
    return {"router.request_id": ctx.request_id, "gen_ai.request.model": ctx.requested_model,
            "router.stream": ctx.stream, "router.tenant": ctx.tenant}  # fmt: skip


def _decision_attributes(decision: Decision) -> dict[str, object]:
    return {
        "router.route": decision.route,
        "router.model": decision.model,
        "router.reason": decision.reason,
        "router.rule": decision.rule,
        "router.score": decision.scores.get("escalation"),
    }


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
