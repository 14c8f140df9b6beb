"""The `Backend` protocol: what the pipeline needs from anything that can answer a request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from router.backends.confidence import EarlyCheck
from router.types import Completion, RequestContext, Route, StreamDelta


@runtime_checkable
class Backend(Protocol):
    name: str
    """The configured model name (what `x-router-model` says)."""
    tier: Route
    measures_confidence: bool
    """Whether `confidence` is measured (the in-process model reads its own logits); elsewhere it is
    ignored, and the cascade does not ask such a model anything aside."""

    async def start(self) -> None:
        """Load or connect; called once from the app's lifespan, may run in the background."""

    async def close(self) -> None: ...

    @property
    def ready(self) -> bool:
        """True once the backend can answer (a local model is loaded)."""

    def unavailable_reason(self) -> str | None:
        """Why this backend can never answer as configured (e.g. no API key), or None."""

    async def complete(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> Completion:
        """The whole answer; with `confidence`, a local model also measures how sure it was (the cascade)."""

    def stream(
        self, ctx: RequestContext, max_tokens: int | None, *, confidence: bool | EarlyCheck = False
    ) -> AsyncIterator[StreamDelta]:
        """Yield deltas; the last carries `finish_reason`, and usage where the upstream reports it."""

    def stats(self) -> dict[str, Any]: ...
