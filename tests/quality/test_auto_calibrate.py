"""Auto-calibration: the live threshold follows the judgements in bounded steps, and the policy file wins."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from router.config import AutoCalibrateConfig, GatewayConfig, LedgerConfig
from router.ledger import Ledger, SqliteLedgerStore
from router.metrics import Metrics
from router.policy import parse_policy
from router.policy.facts import Facts
from router.quality import SqliteJudgementStore, calibrate
from router.quality.monitor import QualityMonitor
from router.quality.report import QualityReporter
from router.routing import Router
from router.types import Findings, RequestContext
from tests.quality.synthetic import BASE_AT, judged, population

POLICY = "version: 1\ndefault: {route: auto, threshold: %s}\n"


def _ctx(score: float) -> Facts:
    request = RequestContext("r", "chat", "auto", ({"role": "user", "content": "hi"},))
    return Facts(request, Findings(scores={"escalation": score}))


def test_the_live_threshold_moves_towards_the_target_in_bounded_steps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = GatewayConfig()
    router = Router(config, parse_policy(POLICY % 0.9, "p.yaml", config.models))
    score, local, cloud = population(6000, 21)
    sample = judged(score, local, cloud, 0.6, share=0.2, explore=0.2, seed=21)
    target = calibrate(sample, 0.9).threshold
    assert target < 0.8  # the written 0.9 keeps too little quality: the threshold must come down

    async def run() -> list[float]:
        store = SqliteJudgementStore(tmp_path / "ledger.sqlite")
        await store.add(sample)
        ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
        auto = AutoCalibrateConfig(quality_target=0.9, min_samples=100, max_step=0.05, window="400d")
        monitor = QualityMonitor(QualityReporter(store, ledger, config.shadow, set()), router, Metrics(), auto)
        seen = []
        for _ in range(6):
            status = await monitor.step(now=BASE_AT + 7000)
            seen.append(router.live_thresholds["default"])
            assert status["default"]["written"] == 0.9
        await store.close()
        return seen

    with caplog.at_level(logging.INFO, logger="router.quality.monitor"):
        seen = asyncio.run(run())
    assert seen[:3] == pytest.approx([0.85, 0.8, 0.75])  # max_step at a time
    assert seen[-1] == pytest.approx(max(target, 0.6))
    assert "auto-calibrate default: threshold 0.9000 -> 0.8500" in caplog.text
    live = router.live_thresholds["default"]
    decided = router.decide(_ctx((live + 0.9) / 2))  # between the live and the written threshold
    assert (decided.route, decided.scores["threshold"]) == ("cloud", pytest.approx(live))


def test_a_policy_edit_of_the_threshold_drops_the_live_one(tmp_path: Path) -> None:
    config = GatewayConfig()
    router = Router(config, parse_policy(POLICY % 0.9, "p.yaml", config.models))
    score, local, cloud = population(3000, 22)
    sample = judged(score, local, cloud, 0.6, share=0.3, explore=0.3, seed=22)

    async def run() -> None:
        store = SqliteJudgementStore(":memory:")
        await store.add(sample)
        ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
        auto = AutoCalibrateConfig(quality_target=0.9, min_samples=10, max_step=0.05, window="400d")
        monitor = QualityMonitor(QualityReporter(store, ledger, config.shadow, set()), router, Metrics(), auto)
        await monitor.step(now=BASE_AT + 4000)
        assert router.live_thresholds["default"] == pytest.approx(0.85)
        router.use_policy(parse_policy(POLICY % 0.5, "p.yaml", config.models))  # someone edits the file
        await monitor.step(now=BASE_AT + 4000)
        assert router.live_thresholds["default"] != pytest.approx(0.8)  # it starts again from the file's 0.5
        assert abs(router.live_thresholds["default"] - 0.5) <= 0.05 + 1e-9
        await store.close()

    asyncio.run(run())


def test_too_few_judgements_leave_the_threshold_alone(tmp_path: Path) -> None:
    config = GatewayConfig()
    router = Router(config, parse_policy(POLICY % 0.7, "p.yaml", config.models))

    async def run() -> dict:
        store = SqliteJudgementStore(":memory:")
        ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
        auto = AutoCalibrateConfig(quality_target=0.9, min_samples=50)
        monitor = QualityMonitor(QualityReporter(store, ledger, config.shadow, set()), router, Metrics(), auto)
        return await monitor.step()

    status = asyncio.run(run())
    assert "waiting for judgements (0 of 50)" in status["default"]["note"]
    assert router.live_thresholds == {}


def test_the_quality_gauges_carry_the_estimate_and_its_interval() -> None:
    config = GatewayConfig()
    router = Router(config, parse_policy(POLICY % 0.7, "p.yaml", config.models))
    score, local, cloud = population(3000, 23)
    # Inside the last hour, so the 24 h window holds every one whenever the test runs: the synthetic
    # judgements start a day ago, at the window's edge, where one a second would leave it between the
    # gauges' report and the test's (seen on a busy machine, a quarter of an hour into the suite).
    sample = judged(score, local, cloud, 0.6, share=0.2, explore=0.2, seed=23, start=time.time() - 3600)
    metrics = Metrics()

    async def run() -> dict:
        store = SqliteJudgementStore(":memory:")
        await store.add(sample)
        reporter = QualityReporter(store, Ledger(SqliteLedgerStore(":memory:"), LedgerConfig()), config.shadow, set())
        await QualityMonitor(reporter, router, metrics, None).refresh_gauges()
        report = await reporter.report("24h")
        await store.close()
        return report

    overall = asyncio.run(run())["overall"]
    text = metrics.render().decode()
    for bound, key in (("estimate", "quality_retained"), ("low", "low"), ("high", "high")):
        assert f'router_quality_retained{{bound="{bound}",rule="all"}} {overall[key]}' in text
    assert overall["judged"] > 100
    assert f'router_quality_judged{{rule="all"}} {float(overall["judged"])}' in text


def test_replicas_step_once_per_interval_and_share_the_thresholds(tmp_path: Path) -> None:
    """Two replicas on one Redis: one takes the interval's step, the other takes up its thresholds, so the
    threshold moves one `max_step` per interval, not one per replica."""
    from router.quality.store import RedisLiveThresholds
    from router.redis_client import RedisGuard, connect
    from tests.servers import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    config = GatewayConfig()
    score, local, cloud = population(3000, 24)
    sample = judged(score, local, cloud, 0.6, share=0.3, explore=0.3, seed=24)
    routers = [Router(config, parse_policy(POLICY % 0.9, "p.yaml", config.models)) for _ in range(2)]

    async def run() -> list[dict]:
        store = SqliteJudgementStore(tmp_path / "shared.sqlite")  # stands in for the shared judgements
        await store.add(sample)
        auto = AutoCalibrateConfig(quality_target=0.9, min_samples=10, max_step=0.05, interval_s=60, window="400d")
        ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
        monitors = [
            QualityMonitor(QualityReporter(store, ledger, config.shadow, set()), router, Metrics(), auto,
                           RedisLiveThresholds(RedisGuard(connect(server.url)), prefix=f"t{id(tmp_path)}"))
            for router in routers
        ]  # fmt: skip
        statuses = [await m.step(now=BASE_AT + 4000) for m in monitors]
        await store.close()
        return statuses

    try:
        first, second = asyncio.run(run())
    finally:
        server.stop()
    assert first["default"]["live"] == pytest.approx(0.85)  # the replica that claimed the step moved it
    assert "taken by another replica" in second["default"]["note"]
    assert [r.live_thresholds["default"] for r in routers] == [pytest.approx(0.85)] * 2
