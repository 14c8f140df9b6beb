"""The confidence cascade: the local model answers first; when it was not sure, the cloud answers instead.

A policy rule with `cascade:` (and a route that comes out `local`) sets `Decision.cascade`. The local
backend measures its confidence while it generates (`backends/confidence.py`) and hands it to an
`EarlyCheck`, which keeps the answer or escalates it to the cloud.

With `decide_after_tokens: k` the check runs as soon as the answer's first k tokens are known (or at
the end of a shorter answer). A stream holds back only those k tokens: a kept answer's are flushed
at once and the rest streams live; on escalation the local model stops at k tokens and the client sees
nothing of it, only the cloud's answer. Without `k` the whole answer is judged, so a stream is held
back until the local model has finished. Streamed and non-streamed requests run the same check at
the same token, so they decide alike (`x-router-cascade` and the ledger agree whichever the client
used).

With `letter_gain`, a multiple-choice question is first asked aside for its letter (`letter_probe.py`):
that one token decides, before the served answer starts, which then streams live or comes from the
cloud; other requests are judged as by `expected_gain`.

If the cloud cannot answer, the local answer stands (`x-router-cascade: escalation-failed`) rather
than an error: the one in hand when it was whole, else the local model answers again without the
cascade (its prompt is in the prefix cache by then).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from router import tracing
from router.backends.confidence import EarlyCheck
from router.cascade_rule import Confidence
from router.errors import RouterError
from router.letter_probe import LETTER_GAIN, asks_letter, judged_as_expected_gain, letter_request
from router.resilience import Executor
from router.routing import Router
from router.types import Completion, Decision, RequestContext, Served, StreamDelta

log = logging.getLogger(__name__)
T = TypeVar("T")


class CascadingExecutor:
    """Runs a decision through the executor; a decision that carries a cascade may be run twice."""

    def __init__(self, executor: Executor, router: Router) -> None:
        self._executor = executor
        self._router = router

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
        decision, letter = await self._letter_asked_aside(ctx, decision, deadline)
        if letter is not None:
            return await self._after_letter(
                ctx, decision, letter, lambda d: self._executor.complete(ctx, d, max_tokens, deadline)
            )
        if decision.cascade is None:
            return await self._executor.complete(ctx, decision, max_tokens, deadline)
        check = _check(decision)
        completion, served = await self._executor.complete(ctx, decision, max_tokens, deadline, confidence=check)
        if not _judged(check, served, completion.confidence):
            return completion, served
        stopped = check.escalated and check.midway
        value = _value(decision, check)
        if not check.escalated:
            return completion, replace(served, cascade="kept", confidence=value)

        async def local_again() -> tuple[Completion, Served]:
            return await self._executor.complete(ctx, replace(decision, cascade=None), max_tokens, deadline)

        return await self._escalated(
            ctx, decision, value,
            lambda cloud: self._executor.complete(ctx, cloud, max_tokens, deadline),
            local_again if stopped else _already((completion, served)),
        )  # fmt: skip

    async def stream(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float
    ) -> tuple[AsyncIterator[StreamDelta], Served]:
        decision = self._without_unreachable_cascade(decision)
        decision, letter = await self._letter_asked_aside(ctx, decision, deadline)
        if letter is not None:
            return await self._after_letter(
                ctx, decision, letter, lambda d: self._executor.stream(ctx, d, max_tokens, deadline)
            )
        if decision.cascade is None:
            return await self._executor.stream(ctx, decision, max_tokens, deadline)
        check = _check(decision)
        deltas, served = await self._executor.stream(ctx, decision, max_tokens, deadline, confidence=check)
        if served.route != "local" or served.fallback:
            return deltas, served
        held: list[StreamDelta] = []
        async for delta in deltas:  # the backend's stream is read only as far as the check needs
            held.append(delta)
            if check.decided:
                break
        final = next((d.confidence for d in reversed(held) if d.confidence is not None), None)
        if not _judged(check, served, final):
            return _replay(held, deltas), served
        value = _value(decision, check)
        if not check.escalated:
            return _replay(held, deltas), replace(served, cascade="kept", confidence=value)
        await _close(deltas)  # the local model stopped at the check; none of its tokens are sent
        stopped = check.midway

        async def local_again() -> tuple[AsyncIterator[StreamDelta], Served]:
            return await self._executor.stream(ctx, replace(decision, cascade=None), max_tokens, deadline)

        return await self._escalated(
            ctx, decision, value,
            lambda cloud: self._executor.stream(ctx, cloud, max_tokens, deadline),
            local_again if stopped else _already((_replay(held), served)),
        )  # fmt: skip

    async def _letter_asked_aside(
        self, ctx: RequestContext, decision: Decision, deadline: float
    ) -> tuple[Decision, EarlyCheck | None]:
        """For `letter_gain`: (the decision, its verdict) once the local model has been asked aside for the
        letter; for a request that is not a multiple-choice question, for a local model that measures nothing
        (a server pool), or when the aside call fails, (the decision judged as `expected_gain`, None)."""
        cascade = decision.cascade
        if cascade is None or cascade.metric != LETTER_GAIN:
            return decision, None
        if asks_letter(ctx, cascade) and self._executor.measures_confidence(decision.model):
            check = EarlyCheck(0, cascade.escalate, reads="letter")
            aside = replace(decision, cascade=None, fallbacks=())  # one local token, never a cloud call
            try:
                _, served = await self._executor.complete(letter_request(ctx), aside, 1, deadline, confidence=check)
            except RouterError as exc:
                log.info("request %s: the letter asked aside failed (%s); judged as expected_gain", ctx.request_id, exc)
            else:
                if served.route == "local" and check.decided:
                    return decision, check
        return replace(decision, cascade=judged_as_expected_gain(cascade)), None

    async def _after_letter(
        self,
        ctx: RequestContext,
        decision: Decision,
        check: EarlyCheck,
        ask: Callable[[Decision], Awaitable[tuple[T, Served]]],
    ) -> tuple[T, Served]:
        """The served answer once the letter has decided: the local model's, live, or the cloud's."""
        value = _value(decision, check)
        local = replace(decision, cascade=None)
        if check.escalated:
            return await self._escalated(ctx, decision, value, ask, lambda: ask(local))
        answer, served = await ask(local)
        return answer, replace(served, cascade="kept", confidence=value) if served.route == "local" else served

    async def _escalated(
        self,
        ctx: RequestContext,
        decision: Decision,
        value: float,
        ask: Callable[[Decision], Awaitable[tuple[T, Served]]],
        local: Callable[[], Awaitable[tuple[T, Served]]],
    ) -> tuple[T, Served]:
        """The cloud's answer; if no cloud model can give one, the local answer (`escalation-failed`)."""
        assert decision.cascade is not None
        try:
            cloud = self._router.escalated(decision)
            with tracing.span("router.cascade", **{"router.cascade.metric": decision.cascade.metric,
                                                   "router.cascade.value": value}):  # fmt: skip
                answer, by_cloud = await ask(cloud)
        except RouterError as exc:
            log.warning("request %s: cascade to the cloud failed (%s); the local answer stands", ctx.request_id, exc)
            answer, served = await local()
            return answer, replace(served, cascade="escalation-failed", confidence=value)
        return answer, replace(by_cloud, cascade="escalated", confidence=value)


def _check(decision: Decision) -> EarlyCheck:
    assert decision.cascade is not None
    return EarlyCheck(decision.cascade.decide_after_tokens, decision.cascade.escalate)


def _judged(check: EarlyCheck, served: Served, final: Confidence | None) -> bool:
    """Whether the check has a verdict, judging the whole answer now if the backend's meter did not
    (the answer was shorter than `decide_after_tokens`, or the cascade judges whole answers). False
    when there is nothing to judge: a fallback answered, or the backend measures no confidence."""
    if served.route != "local" or served.fallback:
        return False
    if not check.decided and final is not None:
        check.judge(final)
    return check.decided


def _value(decision: Decision, check: EarlyCheck) -> float:
    assert decision.cascade is not None and check.confidence is not None
    return decision.cascade.measure(check.confidence)


def _already(answer: tuple[T, Served]) -> Callable[[], Awaitable[tuple[T, Served]]]:
    async def given() -> tuple[T, Served]:
        return answer

    return given


async def _replay(
    held: Sequence[StreamDelta], rest: AsyncIterator[StreamDelta] | None = None
) -> AsyncIterator[StreamDelta]:
    """What was held back, at once, then the rest of the stream live."""
    try:
        for delta in held:
            yield delta
        if rest is not None:
            async for delta in rest:
                yield delta
    finally:
        if rest is not None:
            await _close(rest)


async def _close(deltas: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()
