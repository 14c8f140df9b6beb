"""A decision told in full: the JSON that `/v1/router/explain`, `router route --json`, `router policy
test` and `router policy diff` all read, made from what `Decider.decide` returned."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from router.cache import not_cacheable
from router.deciding import Decided
from router.letter_probe import asks_letter
from router.types import RequestContext


def explanation_dict(ctx: RequestContext, decided: Decided) -> dict[str, Any]:
    """Where a request goes and why, as `/v1/router/explain`, `router route --json` and policy tests show it."""
    explanation, found = decided.explanation, decided.found
    d = explanation.decision
    return {
        "route": d.route,
        "model": d.model,
        "reason": d.reason,
        "rule": d.rule,
        "needs": list(d.needs),
        "intent": asdict(d.intent) if d.intent else None,
        "session": {"escalated_before": found.session_escalated},
        "intents": {scope: asdict(m) for scope, m in found.intents.items()},
        "deny": asdict(d.deny) if d.deny else None,
        "fallbacks": list(d.fallbacks),
        "allow_cloud": d.allow_cloud,
        "max_tokens_cap": d.max_tokens_cap,
        "redact": list(d.redact),
        "upstream_headers": dict(d.upstream_headers),
        "scores": dict(d.scores),
        "cascade": asdict(d.cascade) | {"asks_letter": asks_letter(ctx, d.cascade)} if d.cascade else None,
        "cache": {
            "settings": asdict(d.cache),
            "not_cacheable": not_cacheable(ctx, d.cache),
        },
        "prompt_tokens": ctx.prompt_tokens,
        "tenant": ctx.tenant,
        "budget": asdict(found.budget) | {"summary": found.budget.describe()} if found.budget else None,
        "requested_model": ctx.requested_model,
        "requested_target": explanation.requested_target,
        "rules": [
            {
                "rule": t.rule,
                "matched": t.matched,
                "why_not": t.why_not,
                "evidence": list(t.evidence),
                "origin": t.origin,
            }
            for t in explanation.match.trace
        ],
        "policy": explanation.policy_version,
    }
