"""Prometheus metrics, in one registry the app factory owns (no module-level globals).

Labels are bounded: route, model (configured names), rule names from the policy, and small fixed
vocabularies for reasons and states. Never prompt text or user ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "router_requests",
            "Requests answered, by route and model that served them",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "router_request_duration_seconds",
            "Request latency, start to last byte",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
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

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
