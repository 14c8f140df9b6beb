"""Deciding requests from the command line exactly as the running gateway does.

`route --explain`, `policy test` and `policy diff` build the gateway's own components (the app factory,
with the local model's weights left unloaded and prompt tokens counted with its GGUF vocabulary) and call
`Pipeline.explain`: the stages the HTTP path runs, as a dry run. Nothing here decides on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from router.components import Components
    from router.policy import PolicyEngine
    from router.policy.testing import Explain

T = TypeVar("T")


def with_explainer(components: Components, work: Callable[[Explain], Awaitable[T]]) -> T:
    """Run `work` with the pipeline's explainer, in one event loop, the embedder and intents made ready first
    and shared state closed after."""
    from router.app import deciding

    async def main() -> T:
        async with deciding(components) as pipeline:
            return await work(pipeline.explain)

    return asyncio.run(main())


def explain_one(components: Components, ctx: Any) -> dict[str, Any]:
    """One request's explanation, as `/v1/router/explain` gives it."""

    async def work(explain: Explain) -> dict[str, Any]:
        return await explain(ctx, None)

    return with_explainer(components, work)


async def use_policy(components: Components, engine: PolicyEngine) -> None:
    """Decide with `engine` from now on (its intents embedded first), as a hot reload would."""
    from router.app import ready_to_decide

    router = components.pipeline.router
    await ready_to_decide(components.pipeline, engine, router.policy)
    router.use_policy(engine)
