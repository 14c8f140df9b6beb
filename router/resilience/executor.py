"""Execute a `Decision`: timeouts, retries, circuit breakers and the fallback chain, within one deadline.

For each model in the chain (the decision's model, then its fallbacks):
- skip it if it can never answer as configured (no key), if the policy pinned the request to local and
  it is a cloud model, or if its circuit is open;
- otherwise call it with retries (tenacity: exponential backoff with jitter, honouring Retry-After),
  only for retryable failures (timeouts, 5xx, 429, connection errors; never a 4xx), and only until
  the request's deadline;
- a model that still fails before it has produced anything hands over to the next one.
The client sees one answer; `x-router-fallback` and the log line say what happened. A stream can fall
back or retry only before its first delta: after that, a failure ends it with an error event.

Each model gets the request as it may see it: a cloud model gets personal data replaced by placeholders
when the decision says `redact` (the answer gets the originals back), remote models get a rule's extra
headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from router import tracing
from router.backends import Backend
from router.backends.confidence import EarlyCheck
from router.config import RetryPolicy, Timeouts
from router.errors import (
    CircuitOpen,
    Overloaded,
    RateLimited,
    RouterError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from router.metrics import Metrics, failure_reason
from router.pii import Redaction
from router.resilience.breaker import CircuitBreaker
from router.types import Completion, Decision, RequestContext, Served, StreamDelta

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures another model may be able to answer; anything else (a bad request) is final.
HANDOVER_ERRORS = (UpstreamError, Overloaded, RateLimited)


@dataclass(frozen=True, slots=True)
class Guard:
    """What protects calls to one backend. Its retry rules are built once here, not on every call."""

    timeouts: Timeouts
    retries: RetryPolicy
    breaker: CircuitBreaker
    retry_if: Any = field(init=False, repr=False)
    wait: Callable[[RetryCallState], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_if", retry_if_exception(_retryable(self.retries)))
        object.__setattr__(self, "wait", _wait(self.retries))


def _retryable(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if isinstance(exc, RateLimited) and (exc.retry_after_s or 0) > policy.max_retry_after_s:
            return False  # waiting that long helps nobody: fall back now
        return isinstance(exc, RouterError) and exc.retryable

    return check


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(initial=policy.backoff_initial_s, max=policy.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            return exc.retry_after_s
        return backoff(state)

    return wait


def _before_deadline(deadline: float) -> Callable[[RetryCallState], bool]:
    """Stop retrying when the next wait would end after the request's deadline."""

    def stop(state: RetryCallState) -> bool:
        return time.monotonic() + (state.upcoming_sleep or 0.0) >= deadline

    return stop


class Executor:
    def __init__(self, backends: Mapping[str, Backend], guards: Mapping[str, Guard], metrics: Metrics) -> None:
        self._backends = backends
        self._guards = guards
        self._metrics = metrics

    async def complete(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float,
        *, confidence: bool | EarlyCheck = False,
    ) -> tuple[Completion, Served]:  # fmt: skip
        async def attempt(backend: Backend, ctx: RequestContext, timeouts: Timeouts, remaining: float) -> Completion:
            # No byte comes before the whole answer: a hung upstream is known only by the time it takes.
            async with asyncio.timeout(min(timeouts.complete_s(max_tokens), remaining)):
                return await backend.complete(ctx, max_tokens, confidence=confidence)

        return await self._chain(ctx, decision, deadline, attempt, _restore_completion)

    async def stream(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float,
        *, confidence: bool | EarlyCheck = False,
    ) -> tuple[AsyncIterator[StreamDelta], Served]:  # fmt: skip
        """Start a stream; returns once its first delta has arrived, so retries and fallback stay invisible."""

        async def attempt(
            backend: Backend, ctx: RequestContext, timeouts: Timeouts, remaining: float
        ) -> AsyncIterator[StreamDelta]:
            started = time.monotonic()
            deltas = aiter(backend.stream(ctx, max_tokens, confidence=confidence))
            try:
                async with asyncio.timeout(min(timeouts.first_token_s, remaining)):
                    first = await anext(deltas, StreamDelta(finish_reason="stop"))
            except BaseException:
                await _close(deltas)
                raise
            ends_at = min(started + timeouts.total_s, deadline)
            return _guarded(backend.name, first, deltas, ends_at)

        return await self._chain(ctx, decision, deadline, attempt, _restore_stream)

    async def embed(
        self, ctx: RequestContext, decision: Decision, deadline: float, extra: Mapping[str, Any]
    ) -> tuple[tuple[list[Any], int], Served]:
        """Embeddings of `ctx.inputs` (vectors, prompt tokens) from the decision's model, guarded like a chat."""

        async def attempt(backend: Backend, ctx: RequestContext, timeouts: Timeouts, remaining: float) -> Any:
            async with asyncio.timeout(min(timeouts.total_s, remaining)):
                return await backend.embed(list(ctx.inputs), dict(extra))  # type: ignore[attr-defined]

        return await self._chain(ctx, decision, deadline, attempt, lambda result, _: result)

    def can_reach(self, decision: Decision) -> bool:
        """Whether any model of the decision's chain could be called now (configured, key present, allowed)."""
        return any(
            self._skip_reason(decision, self._backends[name]) is None for name in (decision.model, *decision.fallbacks)
        )

    def measures_confidence(self, name: str) -> bool:
        """Whether model `name` measures how sure it is as it answers (`Backend.measures_confidence`)."""
        return self._backends[name].measures_confidence

    def _skip_reason(self, decision: Decision, backend: Backend) -> RouterError | None:
        if backend.tier == "cloud" and not decision.allow_cloud:
            return UpstreamUnavailable("the policy pins this request to local", code="pinned_local")
        if (reason := backend.unavailable_reason()) is not None:
            return UpstreamUnavailable(reason, code="not_configured")
        return None

    async def _chain(
        self,
        ctx: RequestContext,
        decision: Decision,
        deadline: float,
        attempt: Callable[[Backend, RequestContext, Timeouts, float], Awaitable[T]],
        restore: Callable[[T, Redaction], T],
    ) -> tuple[T, Served]:
        failures: list[tuple[str, RouterError]] = []
        for name in (decision.model, *decision.fallbacks):
            backend = self._backends[name]
            if (skip := self._skip_reason(decision, backend)) is not None:
                failures.append((name, skip))
                continue
            call_ctx, redaction = _as_seen_by(backend, ctx, decision)
            try:
                result = await self._attempts(call_ctx, backend, deadline, attempt)
            except HANDOVER_ERRORS as exc:
                if isinstance(exc, Overloaded):
                    self._metrics.shed.labels(name).inc()
                failures.append((name, exc))
                log.warning("request %s: %s could not answer: %s", ctx.request_id, name, exc.message)
                continue
            if redaction is not None:
                result = restore(result, redaction)
            served = self._served(decision, backend, failures)
            if call_ctx.native is not None and getattr(backend, "native_api", None) == call_ctx.native.api:
                served = replace(served, native=True)
            return result, served
        raise _exhausted(decision, failures)

    async def _attempts(
        self,
        ctx: RequestContext,
        backend: Backend,
        deadline: float,
        attempt: Callable[[Backend, RequestContext, Timeouts, float], Awaitable[T]],
    ) -> T:
        guard = self._guards[backend.name]
        retrying = AsyncRetrying(
            stop=stop_after_attempt(guard.retries.attempts) | _before_deadline(deadline),
            wait=guard.wait,
            retry=guard.retry_if,
            reraise=True,
            before_sleep=lambda state: self._note_retry(ctx, backend.name, state),
        )
        async for trial in retrying:
            with trial:
                if not await guard.breaker.allow():
                    raise CircuitOpen(f"{backend.name}: circuit open after repeated failures")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout(f"the request's deadline passed before {backend.name} could answer")
                try:
                    attributes = tracing.attempt_attributes(backend, ctx) if tracing.enabled() else {}
                    with tracing.span(f"chat {backend.name}", client=True, **attributes) as span:
                        result = await attempt(backend, ctx, guard.timeouts, remaining)
                        if span is not None and isinstance(result, Completion):
                            tracing.annotate(span, **tracing.completion_attributes(result))
                except TimeoutError as exc:
                    await self._failed(guard, backend.name, "timeout")
                    raise UpstreamTimeout(f"{backend.name} did not answer in time") from exc
                except (UpstreamError, RateLimited) as exc:
                    await self._failed(guard, backend.name, failure_reason(exc.code))
                    raise
                await guard.breaker.success()
                return result
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    async def _failed(self, guard: Guard, model: str, reason: str) -> None:
        self._metrics.upstream_failures.labels(model, reason).inc()
        await guard.breaker.failure()

    def _note_retry(self, ctx: RequestContext, model: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = failure_reason(exc.code) if isinstance(exc, RouterError) else "error"
        self._metrics.retries.labels(model, reason).inc()
        log.info(
            "request %s: retrying %s in %.2f s (attempt %d failed: %s)",
            ctx.request_id,
            model,
            state.upcoming_sleep or 0.0,
            state.attempt_number,
            exc,
        )

    def _served(self, decision: Decision, backend: Backend, failures: list[tuple[str, RouterError]]) -> Served:
        if backend.name == decision.model:
            return Served(decision=decision, model=backend.name, route=backend.tier)
        first_model, first_error = failures[0]
        fallback = f"{decision.route}->{backend.tier}"
        self._metrics.fallbacks.labels(decision.route, backend.tier, failure_reason(first_error.code)).inc()
        return Served(
            decision=decision,
            model=backend.name,
            route=backend.tier,
            fallback=fallback,
            fallback_reason=f"{first_model}: {first_error.message}",
        )


def _as_seen_by(backend: Backend, ctx: RequestContext, decision: Decision) -> tuple[RequestContext, Redaction | None]:
    """The request as this model may see it, and the redaction to undo in its answer (None: nothing hidden)."""
    if decision.upstream_headers:
        ctx = replace(ctx, upstream_headers=decision.upstream_headers)
    if not decision.redact or backend.tier != "cloud":
        return ctx, None
    redaction = Redaction(decision.redact, avoid=ctx.all_text() + (ctx.prompt or ""))
    messages = redaction.redact_messages(ctx.messages)
    prompt = redaction.redact(ctx.prompt) if ctx.prompt is not None else None
    if not redaction.active:
        return ctx, None
    # The translated request is what redaction rewrites: a redacted request is never forwarded whole.
    return replace(ctx, messages=messages, prompt=prompt, native=None), redaction


def _restore_completion(completion: Completion, redaction: Redaction) -> Completion:
    return replace(
        completion,
        content=redaction.restore(completion.content) if completion.content else completion.content,
        message_extra=redaction.restore_extra(completion.message_extra),
    )


async def _restore_stream(deltas: AsyncIterator[StreamDelta], redaction: Redaction) -> AsyncIterator[StreamDelta]:
    """Restore placeholders as the answer streams; one split across deltas is held until it is whole."""
    restorer = redaction.stream_restorer()
    try:
        async for delta in deltas:
            content = restorer.feed(delta.content) if delta.content else delta.content
            if delta.finish_reason is not None or delta.usage is not None:
                content = (content or "") + restorer.flush() or content
            extra = redaction.restore_extra(delta.delta_extra) if delta.delta_extra else delta.delta_extra
            yield replace(delta, content=content, delta_extra=extra)
        if tail := restorer.flush():
            yield StreamDelta(content=tail)
    finally:
        await _close(deltas)


async def _guarded(
    model: str, first: StreamDelta, rest: AsyncIterator[StreamDelta], ends_at: float
) -> AsyncIterator[StreamDelta]:
    """The stream after its first delta, bounded by its total timeout."""
    try:
        yield first
        while True:
            try:
                async with asyncio.timeout_at(ends_at):
                    delta = await anext(rest)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise UpstreamTimeout(f"{model} stopped sending before the stream ended") from exc
            yield delta
    finally:
        await _close(rest)


async def _close(deltas: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()


def _exhausted(decision: Decision, failures: list[tuple[str, RouterError]]) -> RouterError:
    """The error for a request no model could answer, with the whole story in its message.

    A request whose last resort was saturated gets that 503 with Retry-After rather than the first
    model's 502: the status says what the client can do about it.
    """
    story = "; ".join(f"{name}: {error.message}" for name, error in failures)
    if not decision.allow_cloud:
        story += f" (the policy rule `{decision.rule}` pins this request to local: no cloud model was tried)"
    if not failures:
        return UpstreamUnavailable("No model is configured for this request.")
    attempted = [error for _, error in failures if error.code not in ("pinned_local", "not_configured")]
    # An error that says when to come back (a saturated model's 503, a 429) is the most useful one to
    # report; otherwise the first model's failure, which is why the chain was walked at all.
    with_retry_after = [error for error in attempted if "Retry-After" in error.headers]
    primary = (with_retry_after or attempted or [failures[0][1]])[0]
    error = type(primary)(f"No model could answer this request: {story}", headers=primary.headers, code=primary.code)
    return error
