"""Resilience around the backends: timeouts, retries, circuit breakers and the fallback chain."""

from __future__ import annotations

from router.config import BreakerPolicy, GatewayConfig, RetryPolicy, Timeouts
from router.metrics import BREAKER_STATES, Metrics
from router.resilience.breaker import BreakerStore, CircuitBreaker, MemoryBreakerStore, RedisBreakerStore
from router.resilience.executor import Executor, Guard


def build_guards(
    config: GatewayConfig, store: BreakerStore, metrics: Metrics, extra: tuple[str, ...] = ()
) -> dict[str, Guard]:
    """One guard (timeouts, retry policy, breaker) per configured model, and one with the defaults (no
    retries) for each of `extra`: the gateway's own embedder."""

    def on_transition(model: str, state: str) -> None:
        metrics.breaker_transitions.labels(model, state).inc()
        metrics.breaker_state.labels(model).set(BREAKER_STATES[state])

    guards = {}
    for name, spec in config.models.items():
        # A probe may take as long as one attempt; past that another replica may probe instead.
        breaker = CircuitBreaker(name, spec.breaker, store, spec.timeouts.total_s, on_transition)
        metrics.breaker_state.labels(name).set(0)
        guards[name] = Guard(spec.timeouts, spec.retries, breaker)
    for name in extra:
        timeouts = Timeouts()
        breaker = CircuitBreaker(name, BreakerPolicy(), store, timeouts.total_s, on_transition)
        guards[name] = Guard(timeouts, RetryPolicy(attempts=1), breaker)
    return guards


__all__ = [
    "BreakerStore",
    "CircuitBreaker",
    "Executor",
    "Guard",
    "MemoryBreakerStore",
    "RedisBreakerStore",
    "build_guards",
]
