"""Deciding a request from the command line, as the running gateway would, with no model called.

`route --explain`, `policy test` and `policy diff` share it: the prompt's tokens are counted with the
local GGUF's vocabulary (its weights are not loaded), intents are matched and the classifier scores,
then `Router.explain` decides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from router.tokens import TokenCounter

if TYPE_CHECKING:
    from router.components import Components
    from router.policy import PolicyEngine
    from router.types import RequestContext


def scored_now(components: Components, ctx: RequestContext) -> RequestContext:
    """What the pipeline adds before deciding: the intents matched (their examples embedded once per
    command) and the classifier's score."""
    from router.policy.intents import texts_for

    pipeline = components.pipeline
    engine = pipeline.router.policy
    if engine.needs_intents and pipeline.embeddings is not None:
        if engine.intents is None:
            engine.attach_intents(pipeline.embeddings.embed_now)
        assert engine.intents is not None
        embed = pipeline.embeddings.embed_now
        intents = {s: engine.intents.match_turns(list(embed(texts_for(ctx, s)))) for s in engine.intents.scopes}
        ctx = replace(ctx, intents=intents)
    if pipeline.scorer is not None and "escalation" not in ctx.scores:  # the policy routes something `auto`
        text = pipeline.scorer_text(ctx) or ctx.last_user_text()
        ctx = replace(ctx, scores={"escalation": pipeline.scorer.score_now(text)})
    return ctx


def use_policy(components: Components, engine: PolicyEngine) -> None:
    """Decide with `engine` from now on, with the embedder and classifier it needs."""
    from router.app import head_for_local
    from router.classify.embedding_service import EmbeddingService
    from router.classify.scorer import EscalationScorer

    pipeline = components.pipeline
    if (engine.needs_intents or engine.policy.uses_classifier) and pipeline.embeddings is None:
        pipeline.embeddings = EmbeddingService(components.config.embedder)
    if engine.policy.uses_classifier and pipeline.scorer is None and pipeline.embeddings is not None:
        pipeline.scorer = EscalationScorer(pipeline.embeddings, head_for_local(components.config))
    pipeline.router.use_policy(engine)


def explainer(components: Components) -> Any:
    """A request in, `/v1/router/explain`'s answer out, for the policy in use at the time of the call."""
    from router.api.ops import explanation_dict

    tokens = token_counter(components)

    def explain(ctx: RequestContext) -> dict[str, Any]:
        ctx = replace(ctx, prompt_tokens=tokens.count_messages(ctx.messages))
        return explanation_dict(components, scored_now(components, ctx))

    return explain


def token_counter(components: Components) -> TokenCounter:
    """Exact counts from the local GGUF's vocabulary (weights are not loaded), else the estimate."""
    from router.backends.model_files import model_gguf_path
    from router.config import LlamaCppModel
    from router.tokens import gguf_vocab_counter

    config = components.config
    spec = config.models[config.routes.local]
    if not isinstance(spec, LlamaCppModel):
        return TokenCounter()
    try:
        path = model_gguf_path(spec.model_path, spec.package, components.settings.model_dir)
        return TokenCounter(gguf_vocab_counter(str(path)))
    except Exception:  # no GGUF at hand: estimate; the decision is still shown
        return TokenCounter()
