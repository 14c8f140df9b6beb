"""Deciding a request: admit → facts (budget, session, intents, score) → decide.

The one function that decides where a request goes, for every caller: the HTTP routes of every API,
`/v1/router/explain`, `router route --explain`, `router policy test|diff` and `router label`. A dry run
(explain, the CLI, policy tests) is the same path with `dry_run=True`: it reads the budget instead of
counting the request against the limits, and stops before a model is called. What the stages find is
returned in a `Findings` record beside the decision, never written back into the request.

The question is embedded at most once, and only when the classifier or the intents need the vector
(the semantic cache asks for it later through `embedding`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from router import tracing
from router.classify.embedding_service import MAX_TEXT_CHARS, EmbeddingService
from router.classify.scorer import EscalationScorer
from router.limits import Limiter
from router.policy import PolicyEngine
from router.policy.facts import Facts
from router.policy.intents import texts_for as intent_texts
from router.routing import Explanation, Router
from router.sessions import Sessions
from router.types import NOTHING_FOUND, BudgetStatus, Decision, Findings, IntentMatch, RequestContext

ClassifierInput = Literal["last_user", "conversation"]


@dataclass(frozen=True, slots=True)
class Assumed:
    """What a dry run takes as given instead of looking it up (a policy test's `escalated_before`, `budget`)."""

    session_escalated: bool | None = None
    budget: BudgetStatus | None = None


@dataclass(frozen=True, slots=True)
class Decided:
    """A decided request: what the stages found, and the decision with every rule's verdict."""

    found: Findings
    explanation: Explanation

    @property
    def decision(self) -> Decision:
        return self.explanation.decision


NOTHING_ASSUMED = Assumed()


class Decider:
    """Runs the stages before a model is called; built once with everything it needs."""

    def __init__(
        self,
        router: Router,
        limiter: Limiter | None = None,
        sessions: Sessions | None = None,
        embeddings: EmbeddingService | None = None,
        scorer: EscalationScorer | None = None,
        classifier_input: ClassifierInput = "last_user",
    ) -> None:
        self.router = router
        self.limiter = limiter
        self.sessions = sessions
        self.embeddings = embeddings
        self.scorer = scorer
        self.classifier_input = classifier_input
        """What the classifier reads: `last_user`, or `conversation` (`classifier.input`)."""

    async def decide(self, ctx: RequestContext, *, dry_run: bool = False, assumed: Assumed | None = None) -> Decided:
        """Admit (or, dry, read the budget), find the facts the policy needs, and decide. A dry run may take
        the session's past and the budget as `assumed` instead of looking them up."""
        assumed = assumed if dry_run and assumed is not None else NOTHING_ASSUMED
        engine = self.router.policy  # the facts are found for the policy that then decides, even mid-reload
        with tracing.span("router.decide") as span:
            budget = assumed.budget if assumed.budget is not None else await self._budget(ctx, dry_run)
            found = NOTHING_FOUND if budget is None else Findings(budget=budget)
            found = await self.found(ctx, found, assumed.session_escalated, engine)
            explanation = self.router.explain(Facts(ctx, found), engine)
            if span is not None:
                tracing.annotate(span, **_decision_attributes(explanation.decision))
        return Decided(found, explanation)

    async def _budget(self, ctx: RequestContext, dry_run: bool) -> BudgetStatus | None:
        """Rate limits (429 when used up) and the budget state the policy's `budget:` conditions read."""
        if self.limiter is None:
            return None
        return await (self.limiter.status(ctx) if dry_run else self.limiter.admit(ctx))

    async def found(
        self,
        ctx: RequestContext,
        found: Findings = NOTHING_FOUND,
        session_escalated: bool | None = None,
        engine: PolicyEngine | None = None,
    ) -> Findings:
        """The facts a policy (the one in force) reads: the session's past, the intents, the classifier's score."""
        engine = engine or self.router.policy
        if session_escalated is None and self.sessions is not None and engine.uses_sessions:
            session_escalated = await self.sessions.escalated_before(ctx)
        if session_escalated:
            found = replace(found, session_escalated=True)
        if engine.needs_intents and engine.intents is not None and self.embeddings is not None:
            found = await self._intended(ctx, found, engine)
        if self.scorer is not None and engine.policy.uses_classifier:
            found = await self._scored(ctx, found)
        return found

    async def embedding(self, ctx: RequestContext, found: Findings) -> Findings:
        """The last user message's embedding, computed once, for whichever stage needs it first."""
        if found.embedding is not None or self.embeddings is None:
            return found
        vector = await self.embeddings.embed(ctx.last_user_text()[:MAX_TEXT_CHARS])
        return found if vector is None else replace(found, embedding=vector)

    async def _scored(self, ctx: RequestContext, found: Findings) -> Findings:
        assert self.scorer is not None
        text = self._classifier_text(ctx)
        if text is None:  # the last user message: the shared embedding is the input
            found = await self.embedding(ctx, found)
            scores = await self.scorer.scores(ctx.last_user_text()[:MAX_TEXT_CHARS], found.embedding)
        else:
            scores = await self.scorer.scores(text)
        return found if scores is None else replace(found, scores={**found.scores, **scores})

    async def _intended(self, ctx: RequestContext, found: Findings, engine: PolicyEngine) -> Findings:
        """Match the policy's intents on each scope a rule names them on. The last user message's embedding
        is the one the cache and classifier share; `conversation` adds the earlier user messages."""
        assert self.embeddings is not None
        index = engine.intents
        assert index is not None
        matches: dict[str, IntentMatch] = {}
        for scope in sorted(index.scopes):
            texts = intent_texts(ctx, scope)
            vectors: list[np.ndarray | None] = []
            if texts[0] == ctx.last_user_text():  # the shared embedding
                found = await self.embedding(ctx, found)
                vectors.append(found.embedding)
                texts = texts[1:]
            vectors += await asyncio.gather(*(self.embeddings.embed(text[:MAX_TEXT_CHARS]) for text in texts))
            if all(v is not None for v in vectors):
                matches[scope] = index.match_turns([v for v in vectors if v is not None])
        return replace(found, intents=matches)

    def _classifier_text(self, ctx: RequestContext) -> str | None:
        """The classifier's input when it is not the last user message (None): the recent conversation,
        with `classifier.input: conversation` and more than one turn."""
        turns = sum(1 for m in ctx.messages if m.get("role") in ("user", "assistant"))
        if self.classifier_input != "conversation" or turns < 2:
            return None
        return ctx.conversation_text()[:MAX_TEXT_CHARS]


def _decision_attributes(decision: Decision) -> dict[str, object]:
    return {
        "router.route": decision.route,
        "router.model": decision.model,
        "router.reason": decision.reason,
        "router.rule": decision.rule,
        "router.score": decision.scores.get("escalation"),
    }
