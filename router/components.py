"""The object graph the app factory builds once and the HTTP layer reads: one holder, no globals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.backends import Backend
from router.config import GatewayConfig, Settings
from router.keys import KeyIdentity
from router.ledger import Ledger
from router.metrics import Metrics
from router.pipeline import Pipeline
from router.policy.reload import PolicyWatcher
from router.quality.monitor import QualityMonitor
from router.quality.report import QualityReporter
from router.quality.shadow import ShadowEvaluator
from router.redis_client import RedisGuard


@dataclass
class Components:
    settings: Settings
    config: GatewayConfig
    backends: Mapping[str, Backend]
    pipeline: Pipeline
    policy_path: Path
    metrics: Metrics
    ledger: Ledger
    redis: RedisGuard | None = None
    """Shared state, when `ROUTER_REDIS_URL` is set; every store falls back to memory while it is down."""
    api_keys: Mapping[str, KeyIdentity] = field(default_factory=dict)
    """sha256(key) → the key's name and team; empty means no authentication."""
    policy_watcher: PolicyWatcher | None = None
    """Reloads the policy when its files change (hot reload)."""
    quality: QualityReporter | None = None
    """Quality retained from the stored judgements, beside the savings."""
    shadow: ShadowEvaluator | None = None
    """Shadow evaluation, when `shadow.share` or `shadow.explore` is set."""
    monitor: QualityMonitor | None = None
    """Quality gauges and auto-calibration of the live thresholds."""

    @property
    def local_backend(self) -> Backend:
        return self.backends[self.config.routes.local]
