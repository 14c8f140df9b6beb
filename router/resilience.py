"""Execute a `Decision` against the backends: a deadline, and the fallback chain before the first byte.

The chain is the decision's model, then its fallbacks, skipping any backend that can never answer as
configured (no key) and, when the policy pinned the request to local, every cloud backend. A backend
that fails before it has produced anything hands over to the next one; the client sees one answer and
`x-router-fallback` says what happened. After the first byte of a stream no fallback is possible.
Retries with backoff and circuit breakers slot in here (`_attempt`) without changing callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from router.backends import Backend
from router.errors import Overloaded, RouterError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from router.types import Completion, Decision, RequestContext, Served, StreamDelta

log = logging.getLogger(__name__)

# Failures that another backend may be able to answer; anything else (a bad request) is final.
HANDOVER_ERRORS = (UpstreamError, Overloaded)


@dataclass(frozen=True, slots=True)
class _Candidate:
    backend: Backend
    skipped_because: str | None


class Executor:
    def __init__(self, backends: Mapping[str, Backend], deadline_s: float) -> None:
        self._backends = backends
        self._deadline_s = deadline_s

    def _candidates(self, decision: Decision) -> list[_Candidate]:
        candidates = []
        for name in (decision.model, *decision.fallbacks):
            backend = self._backends[name]
            reason = backend.unavailable_reason()
            if backend.tier == "cloud" and not decision.allow_cloud:
                reason = "the policy pins this request to local"
            candidates.append(_Candidate(backend, reason))
        return candidates

    def _served(self, decision: Decision, backend: Backend, first_failure: str | None) -> Served:
        fallback = None
        if backend.name != decision.model:
            fallback = f"{decision.route}->{backend.tier}"
        return Served(
            decision=decision,
            model=backend.name,
            route=backend.tier,
            fallback=fallback,
            fallback_reason=first_failure if fallback else None,
        )

    async def complete(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None
    ) -> tuple[Completion, Served]:
        failures: list[str] = []
        last_error: RouterError | None = None
        for candidate in self._candidates(decision):
            backend = candidate.backend
            if candidate.skipped_because:
                failures.append(f"{backend.name}: {candidate.skipped_because}")
                continue
            try:
                async with asyncio.timeout(self._deadline_s):
                    completion = await backend.complete(ctx, max_tokens)
            except TimeoutError:
                last_error = UpstreamTimeout(f"{backend.name} did not answer within {self._deadline_s:g} s")
            except HANDOVER_ERRORS as exc:
                last_error = exc
            else:
                return completion, self._served(decision, backend, failures[0] if failures else None)
            failures.append(f"{backend.name}: {last_error.message}")
            log.warning("request %s: %s failed, trying the next model: %s", ctx.request_id, backend.name, last_error)
        raise _exhausted(failures, last_error)

    async def stream(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None
    ) -> tuple[AsyncIterator[StreamDelta], Served]:
        """Start a stream; returns once the first delta has arrived, so fallback stays invisible."""
        failures: list[str] = []
        last_error: RouterError | None = None
        for candidate in self._candidates(decision):
            backend = candidate.backend
            if candidate.skipped_because:
                failures.append(f"{backend.name}: {candidate.skipped_because}")
                continue
            deltas = aiter(backend.stream(ctx, max_tokens))
            try:
                async with asyncio.timeout(self._deadline_s):
                    first = await anext(deltas, StreamDelta(finish_reason="stop"))
            except TimeoutError:
                last_error = UpstreamTimeout(f"{backend.name} sent nothing within {self._deadline_s:g} s")
            except HANDOVER_ERRORS as exc:
                last_error = exc
            else:
                served = self._served(decision, backend, failures[0] if failures else None)
                return _prepend(first, deltas), served
            await _close(deltas)
            failures.append(f"{backend.name}: {last_error.message}")
            log.warning("request %s: %s failed, trying the next model: %s", ctx.request_id, backend.name, last_error)
        raise _exhausted(failures, last_error)


async def _prepend(first: StreamDelta, rest: AsyncIterator[StreamDelta]) -> AsyncIterator[StreamDelta]:
    try:
        yield first
        async for delta in rest:
            yield delta
    finally:
        await _close(rest)


async def _close(deltas: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()


def _exhausted(failures: list[str], last_error: RouterError | None) -> RouterError:
    """The error for a request that no model could answer: the last failure, with the whole story."""
    story = "; ".join(failures)
    if last_error is None:
        return UpstreamUnavailable(f"No model can answer this request: {story}")
    error = type(last_error)(f"No model could answer this request: {story}", headers=last_error.headers)
    return error
