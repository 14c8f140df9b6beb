"""Prometheus metrics, in one registry the app factory owns (no module-level globals).

Labels are bounded: route, model (configured names), rule names from the policy, and small fixed
vocabularies for reasons, kinds and states. Never prompt text or user ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from router.ledger import CostRecord
    from router.types import Served, Usage

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._declare_requests(self.registry)
        self._declare_cache_and_local(self.registry)
        self._declare_upstreams(self.registry)
        self._declare_quality(self.registry)

    def _declare_requests(self, r: CollectorRegistry) -> None:
        """What each request was: where it went, how long it took, what it cost and saved."""
        self.requests = Counter(
            "router_requests",
            "Requests, by the route and model that served them, the rule that sent them there, and status",
            ["route", "model", "rule", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "router_request_duration_seconds",
            "Request latency, start to last byte",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "router_time_to_first_token_seconds",
            "Time to the first token (to the whole answer when not streamed)",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "router_tokens", "Tokens, by route, model and kind", ["route", "model", "kind"], registry=r
        )
        self.cost = Counter("router_cost_usd", "What answers cost as served, in USD", ["route", "model"], registry=r)
        self.clients = Counter(
            "router_client_requests",
            "Requests by client program (from its user-agent: claude-code, codex, openai-sdk...), API and route",
            ["client", "api", "route"],
            registry=r,
        )
        self.client_tokens = Counter(
            "router_client_tokens", "Tokens by client program, route and kind", ["client", "route", "kind"], registry=r
        )
        self.client_savings = Counter(
            "router_client_savings_usd", "Counterfactual minus actual cost by client program, in USD", ["client"],
            registry=r,
        )  # fmt: skip
        self.counterfactual = Counter(
            "router_counterfactual_cost_usd",
            "What answers would have cost on the reference cloud model, in USD",
            ["route"],
            registry=r,
        )
        self.savings = Counter("router_savings_usd", "Counterfactual minus actual cost, in USD", ["route"], registry=r)
        self.escalations = Counter(
            "router_escalations", "Requests sent to the cloud, by the reason that sent them", ["reason"], registry=r
        )

    def _declare_cache_and_local(self, r: CollectorRegistry) -> None:
        """The response cache, the local model's queue, the event loop."""
        self.cache_hits = Counter("router_cache_hits", "Answers served from the cache, by kind", ["kind"], registry=r)
        self.cache_lookups = Counter(
            "router_cache_lookups",
            "Cache lookups by result (hit-exact, hit-semantic, miss, bypass)",
            ["result"],
            registry=r,
        )
        self.loop_tasks = Gauge(
            "router_event_loop_tasks", "Asyncio tasks alive in this replica (a leak shows as growth)", registry=r
        )
        self.cache_entries = Gauge("router_cache_entries", "Answers in the cache", registry=r)
        self.cache_bytes = Gauge("router_cache_bytes", "Bytes of cached answers", registry=r)
        self.local_queue = Gauge(
            "router_local_queue_depth", "Requests waiting for a local model sequence", ["model"], registry=r
        )
        self.local_busy = Gauge(
            "router_local_busy_instances",
            "Local model sequences generating (batched) or instances busy",
            ["model"],
            registry=r,
        )

    def _declare_upstreams(self, r: CollectorRegistry) -> None:
        """Resilience: fallbacks, retries, failures, breakers, shedding, shared state, policy reloads."""
        self.fallbacks = Counter(
            "router_fallbacks",
            "Requests answered by a fallback model",
            ["from_route", "to_route", "reason"],
            registry=r,
        )
        self.retries = Counter("router_upstream_retries", "Upstream attempts retried", ["model", "reason"], registry=r)
        self.upstream_failures = Counter(
            "router_upstream_failures", "Failed upstream attempts", ["model", "reason"], registry=r
        )
        self.breaker_transitions = Counter(
            "router_breaker_transitions",
            "Circuit breaker state changes made by this replica",
            ["model", "state"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "router_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", ["model"], registry=r
        )
        self.shed = Counter("router_shed", "Requests refused at once because a queue was full", ["model"], registry=r)
        self.redis_errors = Counter(
            "router_redis_errors",
            "Redis calls that failed and fell back to in-process state",
            ["component"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "router_policy_reloads", "Policy file changes: applied, or refused as invalid", ["result"], registry=r
        )

    def _declare_quality(self, r: CollectorRegistry) -> None:
        """Shadow evaluation, the quality retained, the live thresholds."""
        self.shadow_jobs = Counter(
            "router_shadow_jobs",
            "Shadow evaluations, by what became of them: queued, dropped (queue full), budget (daily cap "
            "reached), judged, unjudged (no check decided and no judge), local-busy (an exploration skipped "
            "while clients waited for the local model), unavailable (the reference has no key), failed",
            ["outcome"],
            registry=r,
        )
        self.shadow_queue = Gauge("router_shadow_queue_depth", "Shadow jobs waiting", registry=r)
        self.shadow_usd = Counter(
            "router_shadow_cost_usd", "What shadow and judge calls cost, in USD", ["model"], registry=r
        )
        self.quality_retained = Gauge(
            "router_quality_retained",
            "Estimated quality of what was served relative to the reference cloud model, over the last 24 hours "
            "(1 = as good); by rule, and `all`",
            ["rule", "bound"],
            registry=r,
        )
        self.quality_judged = Gauge(
            "router_quality_judged", "Judgements behind router_quality_retained, by rule", ["rule"], registry=r
        )
        self.live_threshold = Gauge(
            "router_auto_threshold",
            "The live `route: auto` threshold of a rule (auto-calibrated)",
            ["rule"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: prometheus_client builds the key and takes a lock on every
        call, eleven times a request here. The label values are bounded (routes, models, rules, statuses)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_client(self, client: str, api: str, served: Served, usage: Usage | None, saved_usd: float) -> None:
        """Agent traffic by client: what each client program sent, where it was answered, what it saved."""
        child = self._child
        child(self.clients, client, api, served.route).inc()
        if usage is not None:
            child(self.client_tokens, client, served.route, "prompt").inc(usage.prompt_tokens)
            child(self.client_tokens, client, served.route, "cached").inc(usage.cached_tokens)
            child(self.client_tokens, client, served.route, "completion").inc(usage.completion_tokens)
        child(self.client_savings, client).inc(max(0.0, saved_usd))

    def observe_request(
        self,
        served: Served,
        status: int,
        latency_ms: float,
        ttft_ms: float | None,
        usage: Usage | None,
        record: CostRecord | None,
    ) -> None:
        route, model, child = served.route, served.model, self._child
        child(self.requests, route, model, served.decision.reason, str(status)).inc()
        child(self.latency, route).observe(latency_ms / 1000)
        if ttft_ms is not None:
            child(self.ttft, route).observe(ttft_ms / 1000)
        child(self.cache_lookups, served.cache).inc()
        if route == "cache":
            child(self.cache_hits, served.cache.removeprefix("hit-")).inc()
        elif served.decision.route == "cloud" and served.decision.reason != "embeddings":  # embeddings are not routed
            child(self.escalations, served.decision.reason).inc()
        if usage is not None:
            child(self.tokens, route, model, "prompt").inc(usage.prompt_tokens)
            child(self.tokens, route, model, "completion").inc(usage.completion_tokens)
        if record is not None:
            child(self.cost, route, model).inc(record.cost_usd)
            child(self.counterfactual, route).inc(record.counterfactual_usd)
            # A Prometheus counter only goes up: a fallback that cost more than the reference adds 0.
            child(self.savings, route).inc(max(0.0, record.savings_usd))


def failure_reason(code: str | None) -> str:
    """A bounded label for an error code."""
    known = {
        "upstream_timeout": "timeout",
        "rate_limit_exceeded": "rate_limited",
        "circuit_open": "circuit_open",
        "overloaded": "overloaded",
        "upstream_unavailable": "unavailable",
        "upstream_unreachable": "unreachable",
        "upstream_auth_failed": "rejected",
        "upstream_model_not_found": "rejected",
        "not_configured": "not_configured",
        "pinned_local": "pinned_local",
    }
    return known.get(code or "", "error")
