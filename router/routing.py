"""Turn the policy (and, later, the classifier) into one `Decision` per request.

Order of authority, stated once here and in the README:
1. the first policy rule that matches (a policy can overrule what the client asked for: privacy first);
2. otherwise an explicit model the client asked for (`local`, `cloud`, a configured model or alias);
3. otherwise (`auto`, or a model name the gateway does not know) the policy's default route.
Then budgets: a tenant over budget whose request would go to the cloud is sent to the local model or
refused with 429, as `limits.on_budget_exceeded` says (a rule can test `budget:` to act sooner).
Last, capabilities: a request that needs tools, JSON output, vision or logprobs is served by the first
model of its chain that has them, or refused with 400 `capability_unavailable` when none has
(`router/capabilities.py`); a pin still holds, so a pinned request never goes to a cloud model for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from router.capabilities import model_capabilities, required_capabilities
from router.cascade_rule import CascadeSettings
from router.config import GatewayConfig, LiteLLMModel, LlamaCppModel, OpenAICompatibleModel
from router.errors import ModelNotFound
from router.policy import PolicyEngine, PolicyMatch
from router.policy.facts import Facts
from router.policy.schema import CacheAction, Rule
from router.types import (
    NO_CACHE,
    CacheSettings,
    Decision,
    Denial,
    Findings,
    IntentMatch,
    Route,
)  # fmt: skip

AUTO = "auto"
ANSWER_ROOM = 256
"""Tokens a model's context must have left after the prompt for the answer, for the prompt to fit it."""
LOCAL_EMBEDDER = "all-minilm-l6-v2"
"""The gateway's own embedding model (the classifier's and the semantic cache's), as `/v1/embeddings` names it."""
LOCAL_EMBEDDER_NAMES = ("local", LOCAL_EMBEDDER, "sentence-transformers/all-minilm-l6-v2")


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    match: PolicyMatch
    requested_target: str | None
    policy_version: str = ""
    """The version of the policy that decided (it may be swapped by a reload a moment later)."""


class Router:
    def __init__(
        self,
        config: GatewayConfig,
        policy: PolicyEngine,
        unavailable: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self._config = config
        self.policy = policy
        self._capabilities = {name: model_capabilities(spec) for name, spec in config.models.items()}
        # Context windows the gateway knows for sure: its in-process models' own `n_ctx`.
        self._windows = {name: spec.n_ctx for name, spec in config.models.items() if isinstance(spec, LlamaCppModel)}
        self._unavailable = unavailable
        """Why a configured model cannot answer at all (a cloud model without its key), else None (the
        backends say). A capability only counts on a model that can answer."""
        self.live_thresholds: Mapping[str, float] = {}
        """`route: auto` thresholds moved by auto-calibration, by rule name (`default` for the default);
        replaced whole, never edited, so a decision reads one consistent set."""

    def use_policy(self, policy: PolicyEngine) -> None:
        """Swap in a new policy; requests already decided keep the one they saw."""
        self.policy = policy

    def use_thresholds(self, live: Mapping[str, float]) -> None:
        """Swap in auto-calibrated thresholds, whole (a decision reads one consistent set)."""
        self.live_thresholds = dict(live)

    def requested_target(self, model: str) -> str | None:
        """What a requested model name means: `auto`, `local`, `cloud`, a configured model, or None (unknown)."""
        if model in (AUTO, "local", "cloud") or model in self._config.models:
            return model
        return self._config.aliases.get(model)

    def models_for(self, target: str, api: str | None = None) -> tuple[Route, list[str]]:
        """The route and the configured models, in order, that a target stands for. With the client's API
        (`messages`, `responses`), the cloud route's models that take that API whole come first, so an
        agent's request reaches a model of its own family, unchanged, wherever one is configured."""
        routes = self._config.routes
        if target == "local":
            return "local", [routes.local]
        if target == "cloud":
            # No cloud model configured: the decision stays `cloud` and execution falls back to local,
            # so the response says plainly that it wanted the cloud and could not have it.
            return "cloud", self._cloud_models(api) or [routes.local]
        return self._config.models[target].tier, [target]

    def _cloud_models(self, api: str | None) -> list[str]:
        """The cloud route's models; those that take the client's API whole first (a stable sort)."""
        models = list(self._config.routes.cloud)
        if api is not None:
            models.sort(key=lambda name: api not in self._capabilities[name])
        return models

    @staticmethod
    def _classify(found: Findings, threshold: float | None, reason: str) -> tuple[str, str, dict[str, float]]:
        """`auto`: the cloud when the escalation score reaches the threshold. A rule keeps its own name as the
        reason; the default says `classifier`. Without a score (classifier not loaded) the local model answers."""
        score = found.scores.get("escalation")
        if score is None or threshold is None:
            return "local", "classifier-unavailable", {}
        target = "cloud" if score >= threshold else "local"
        return target, "classifier" if reason == "default" else reason, {"escalation": score, "threshold": threshold}

    def _chain(
        self, targets: str | list[str], pinned: bool, api: str | None = None
    ) -> tuple[Route, str, tuple[str, ...]]:
        """(route, model, fallbacks): the listed targets in order, then the other tier unless pinned."""
        listed = [targets] if isinstance(targets, str) else targets
        route, models = self.models_for(listed[0], api)
        for target in listed[1:]:
            models += self.models_for(target, api)[1]
        if not pinned:
            models += [self._config.routes.local] if route == "cloud" else self._cloud_models(api)
        ordered = list(dict.fromkeys(models))  # de-duplicated, order kept
        return route, ordered[0], tuple(ordered[1:])

    def cache_settings(self, rule_cache: CacheAction | None, default_cache: CacheAction | None = None) -> CacheSettings:
        """The gateway's cache defaults, then the policy default's `cache:`, then the matching rule's.
        The gateway's `cache.enabled: false` turns caching off whatever a policy says."""
        base = self._config.cache
        if not base.enabled:
            return NO_CACHE
        settings = CacheSettings(True, base.ttl_s, base.semantic, base.semantic_threshold, False)
        policy_default = default_cache if default_cache is not None else self.policy.policy.default.cache
        for layer in (policy_default, rule_cache):
            if layer is not None:
                settings = CacheSettings(
                    enabled=layer.enabled,
                    ttl_s=layer.ttl_s or settings.ttl_s,
                    semantic=settings.semantic if layer.semantic is None else layer.semantic,
                    semantic_threshold=layer.semantic_threshold or settings.semantic_threshold,
                    sampled=layer.sampled or settings.sampled,
                )
        return settings if settings.enabled else NO_CACHE

    def escalated(self, decision: Decision) -> Decision:
        """The cloud decision a cascade turns a low-confidence local one into. Its fallbacks are the other
        cloud models only: if none answers, the local answer already in hand is the fallback. Only cloud
        models with what the request needs are on it (`_capable` keeps no cascade where there is none)."""
        route, chain = self._escalation_chain(decision.needs)
        if not chain:  # `_capable` keeps no cascade then; a decision built elsewhere gets the whole cloud chain
            route, model, fallbacks = self._chain("cloud", pinned=True)
            chain = [model, *fallbacks]
        return replace(decision, route=route, model=chain[0], fallbacks=tuple(chain[1:]), reason="cascade",
                       cascade=None)  # fmt: skip

    def _escalation_chain(self, needs: tuple[str, ...]) -> tuple[Route, list[str]]:
        """The cloud models a cascade may escalate to that have every capability in `needs`, in order."""
        route, model, fallbacks = self._chain("cloud", pinned=True)
        return route, [name for name in (model, *fallbacks) if set(needs) <= self._capabilities[name]]

    def embedding_decision(self, model: str) -> Decision:
        """Embeddings go to the model the client named: the gateway's own embedder (`all-minilm-l6-v2`,
        `local`) or a configured remote model that embeds; anything else is a 404."""
        if model.lower() in LOCAL_EMBEDDER_NAMES:
            return Decision("local", LOCAL_EMBEDDER, "embeddings", rule="embeddings", allow_cloud=False)
        target = self._config.aliases.get(model, model)
        spec = self._config.models.get(target)
        remote = [
            name for name, s in self._config.models.items() if isinstance(s, LiteLLMModel | OpenAICompatibleModel)
        ]
        if spec is None or target not in remote:
            raise ModelNotFound(
                f"No embedding model `{model}` here: use `{LOCAL_EMBEDDER}` (the gateway's own) or a configured "
                f"remote model ({', '.join(remote) or 'none configured'}).",
                param="model",
            )
        return Decision(self._config.models[target].tier, target, "embeddings", rule="embeddings")

    def refusal(self, reason: str) -> Decision:
        """The decision a request refused before routing (a rate limit) is recorded under."""
        route, models = self.models_for("local")
        return Decision(route, models[0], reason, allow_cloud=False)

    def decide(self, facts: Facts) -> Decision:
        return self.explain(facts).decision

    def explain(self, facts: Facts, engine: PolicyEngine | None = None) -> Explanation:
        """The decision (by `engine`, else the policy in force) with every rule's verdict."""
        ctx, found = facts.request, facts.found
        requested = self.requested_target(ctx.requested_model)
        if requested is None and self._config.server.unknown_models == "reject":
            raise ModelNotFound(
                f"The model `{ctx.requested_model}` does not exist on this gateway; "
                f"use `auto`, `local`, `cloud` or one of: {', '.join(self._config.models)}",
                param="model",
            )
        engine = engine or self.policy  # one policy decides, even if a reload swaps another in meanwhile
        match = engine.evaluate(facts)
        scores: dict[str, float] = {}
        rule = match.rule
        action = rule if rule is not None else match.default
        if rule is not None and rule.deny is not None:
            denial = Denial(rule.deny.message, rule.deny.status)
            route, model = self.models_for("local")
            decision = Decision(route, model[0], rule.name, rule=rule.name, allow_cloud=False, deny=denial)
            return Explanation(decision, match, requested, engine.version)
        if rule is not None:
            target, reason = rule.route, rule.name
        elif requested not in (None, AUTO):
            target, reason, action = requested, "requested-model", None
        else:
            target, reason = match.default.route, "default"
        assert target is not None
        threshold = action.threshold if action is not None else None
        cascade = action.cascade if action is not None else None
        if target == AUTO:
            threshold = self.live_thresholds.get(rule.name if rule is not None else "default", threshold)
            target, reason, scores = self._classify(found, threshold, reason)
        sticky = action is not None and action.session == "sticky" and found.session_escalated
        first = target if isinstance(target, str) else target[0]
        if sticky and self._config.routes.cloud and self.models_for(first)[0] == "local":
            target, reason = "cloud", "sticky-session"  # an earlier turn of this conversation went there
        pinned = rule is not None and rule.pin
        route, model, fallbacks = self._chain(target, pinned, ctx.native.api if ctx.native is not None else None)
        decision = Decision(
            route=route,
            model=model,
            reason=reason,
            rule=rule.name if rule else None,
            fallbacks=fallbacks,
            allow_cloud=not (pinned and route == "local"),
            max_tokens_cap=action.max_tokens if action is not None else None,
            scores=scores,
            cache=self.cache_settings(rule.cache if rule else None, match.default.cache),
            # Only a local answer can be second-guessed, and only where a cloud model exists to ask.
            cascade=CascadeSettings(
                cascade.metric, cascade.threshold, cascade.decide_after_tokens, found.scores.get("strong_chance")
            )
            if cascade is not None and route == "local" and self._config.routes.cloud
            else None,
            redact=tuple(action.redact or ()) if action is not None else (),
            upstream_headers=dict(action.headers or {}) if action is not None else {},
            intent=_routed_intent(found, rule) if found.intents else None,  # no intents matched: nothing to walk
            shadow=action.shadow if action is not None else None,
            remember_session=engine.uses_sessions,
        )
        decision = self._fitting(facts, self._capable(facts, self._within_budget(found, decision)))
        return Explanation(decision, match, requested, engine.version)

    def _fitting(self, facts: Facts, decision: Decision) -> Decision:
        """A prompt too long for a model's context window (with room for `ANSWER_ROOM` tokens) skips that
        model for the next of its chain that can hold it and can answer, with its own reason. When none
        can, the chain is left as it is: the first model refuses with `context_length_exceeded`, which
        says why (better than a 503 from a cloud model that has no key)."""
        if decision.deny is not None:
            return decision
        needed = facts.request.prompt_tokens + ANSWER_ROOM
        chain = [decision.model, *decision.fallbacks]
        fits = [name for name in chain if self._windows.get(name, needed) >= needed]
        if decision.model in fits:
            return replace(decision, fallbacks=tuple(name for name in decision.fallbacks if name in fits))
        usable = [name for name in fits if self._unavailable(name) is None]
        if not usable:
            return decision
        first = fits.index(usable[0])
        route = self._config.models[usable[0]].tier
        return replace(decision, route=route, model=usable[0], fallbacks=tuple(fits[first + 1 :]),
                       reason="context-window", cascade=decision.cascade if route == "local" else None)  # fmt: skip

    def _capable(self, facts: Facts, decision: Decision) -> Decision:
        """The decision's chain cut to the models that can honour what the request needs, or a 400."""
        needs = required_capabilities(facts)
        if not needs or decision.deny is not None:
            return decision
        chain = (decision.model, *decision.fallbacks)
        able = [name for name in chain if set(needs) <= self._capabilities[name]]
        capable = [name for name in able if self._unavailable(name) is None]
        if not capable:
            have = "; ".join(f"{name}: {', '.join(sorted(self._capabilities[name])) or 'none'}" for name in chain)
            wanted = " and ".join(_described(need, facts) for need in needs)
            message = f"This request needs {wanted}, which no model it may use supports ({have}). "
            if able:  # a model could, but cannot answer at all right now
                why = "; ".join(f"{name} could, but {self._unavailable(name)}" for name in able)
                message = f"This request needs {wanted}: {why}. "
            message += "Send it without that, or configure a model that has it (`capabilities:` in the gateway config)."
            return replace(decision, needs=needs, deny=Denial(message, 400, "capability_unavailable"),
                           reason=f"needs-{'+'.join(needs)}")  # fmt: skip
        route = self._config.models[capable[0]].tier
        # A local answer is handed to the cloud only where a cloud model can honour what the request needs.
        keeps_cascade = decision.cascade is not None and route == "local" and bool(self._escalation_chain(needs)[1])
        cascade = decision.cascade if keeps_cascade else None
        if capable[0] == decision.model:
            return replace(decision, needs=needs, fallbacks=tuple(capable[1:]), cascade=cascade)
        missing = sorted(set(needs) - self._capabilities[decision.model])
        # Not missing a capability: the chosen model has them all but cannot answer (no key, say).
        reason = f"needs-{'+'.join(missing)}" if missing else f"{decision.model}-unavailable"
        return replace(
            decision, route=route, model=capable[0], fallbacks=tuple(capable[1:]), needs=needs,
            reason=reason, cascade=cascade,
        )  # fmt: skip

    def _within_budget(self, found: Findings, decision: Decision) -> Decision:
        """A tenant over budget gets no cloud answer: the local model answers, or 429, as configured."""
        if found.budget is None or found.budget.state != "over":
            return decision
        message = (
            f"Budget exceeded: {found.budget.describe()}. Cloud models are unavailable to this tenant until the "
            f"budget resets"
        )
        if self._config.limits.on_budget_exceeded == "reject":
            if decision.route == "local" and decision.cascade is None:
                return replace(decision, allow_cloud=False)
            return replace(decision, deny=Denial(message + ".", 429, "budget_exceeded"), reason="budget-exceeded")
        route, models = self.models_for("local")
        if decision.route == "local":
            return replace(decision, allow_cloud=False, cascade=None)
        return replace(
            decision, route=route, model=models[0], fallbacks=(), allow_cloud=False, cascade=None,
            reason="budget-exceeded", redact=(),
        )  # fmt: skip


def _routed_intent(found: Findings, rule: Rule | None) -> IntentMatch | None:
    """The intent match the matching rule relied on, for explain and `x-router-intent`."""
    if rule is None:
        return None
    for scope in sorted(rule.when.intent_scopes):
        match = found.intents.get(scope)
        if match is not None and match.intent is not None:
            return match
    return None


def _described(need: str, facts: Facts) -> str:
    """A capability as the refusal names it; a native API with what in the request requires it."""
    native = facts.request.native
    if need in ("messages", "responses") and native is not None:
        api = "Anthropic Messages" if need == "messages" else "OpenAI Responses"
        return f"`{need}` (a model that takes {api} requests whole: it holds {', '.join(native.requires)})"
    return need
