"""The quality loop: keeps the quality gauges current and, with `auto_calibrate`, moves the live
`route: auto` thresholds towards the quality target in bounded steps.

Each step reads the judgements of the window (the same ones every replica reads, when Redis holds them),
calibrates each `route: auto` rule that has enough of them, and moves its live threshold by at most
`max_step` towards the calibrated one. With Redis, one replica takes each interval's step and the others
take up its thresholds, so they move together and at most `max_step` per interval. The live thresholds
are swapped in whole, like a policy, and a policy reload that changes a rule's written threshold drops
that rule's live one: the file wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from router.config import AutoCalibrateConfig
from router.ledger.stats import parse_window
from router.metrics import Metrics
from router.quality.estimate import calibrate
from router.quality.report import QualityReporter
from router.quality.store import LiveThresholdStore, MemoryLiveThresholds
from router.routing import Router

log = logging.getLogger(__name__)
GAUGE_REFRESH_S = 60.0


def auto_thresholds(router: Router) -> dict[str, float]:
    """The thresholds the policy writes for its `route: auto` rules (`default` for the default)."""
    policy = router.policy.policy
    found = {rule.name: rule.threshold for rule in policy.rules if rule.route == "auto" and rule.threshold is not None}
    if policy.default.route == "auto" and policy.default.threshold is not None:
        found["default"] = policy.default.threshold
    return found


class QualityMonitor:
    def __init__(
        self,
        reporter: QualityReporter,
        router: Router,
        metrics: Metrics,
        auto: AutoCalibrateConfig | None,
        shared: LiveThresholdStore | None = None,
    ) -> None:
        self._reporter = reporter
        self._router = router
        self._metrics = metrics
        self.auto = auto
        self._shared = shared or MemoryLiveThresholds()
        """The live thresholds of every replica (Redis) and which replica steps; one process: its own."""
        self.status: dict[str, dict[str, Any]] = {}
        """Per `route: auto` rule: written and live threshold, samples, and what the last step found."""
        self._written: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="quality-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        every = min(GAUGE_REFRESH_S, self.auto.interval_s) if self.auto else GAUGE_REFRESH_S
        last_step = 0.0
        if self.auto is not None:  # a replica that starts late takes up the thresholds the others reached
            with contextlib.suppress(Exception):
                self._router.use_thresholds(await self._adopted(self._follow_policy()))
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh_gauges()
                if self.auto is not None and time.monotonic() - last_step >= self.auto.interval_s:
                    last_step = time.monotonic()
                    await self.step()
            except Exception:
                log.exception("quality monitor step failed; trying again in %.0f s", every)

    async def refresh_gauges(self) -> None:
        report = await self._reporter.report("24h")
        for name, entry in [("all", report["overall"]), *((r["rule"], r) for r in report["rules"])]:
            self._metrics.quality_judged.labels(name).set(entry["judged"])
            if "quality_retained" in entry:
                for bound in ("quality_retained", "low", "high"):
                    self._metrics.quality_retained.labels(name, bound.replace("quality_retained", "estimate")).set(
                        entry[bound]
                    )

    def _follow_policy(self) -> dict[str, float]:
        """Live thresholds still valid for the policy in force: a rule whose written threshold changed (or
        that is gone) loses its live one."""
        written = auto_thresholds(self._router)
        live = {
            key: value
            for key, value in self._router.live_thresholds.items()
            if key in written and self._written.get(key) == written[key]
        }
        self._written = written
        return live

    async def _adopted(self, live: dict[str, float]) -> dict[str, float]:
        """`live` with the shared thresholds of rules written as in this replica's policy."""
        shared = await self._shared.read()
        return live | {key: value for key, (written, value) in shared.items() if self._written.get(key) == written}

    async def step(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """One calibration step over the window's judgements, taken by one replica per interval (the others
        take up its thresholds); returns the status per rule."""
        assert self.auto is not None
        auto = self.auto
        live = await self._adopted(self._follow_policy())
        until = now if now is not None else time.time()
        if not await self._shared.claim(auto.interval_s):
            self._router.use_thresholds(live)
            self.status = {
                key: {"written": written, "live": live.get(key, written), "updated_at": int(until),
                      "note": "this interval's step was taken by another replica; its thresholds are in use"}
                for key, written in self._written.items()
            }  # fmt: skip
            return self.status
        judgements = await self._reporter.judgements(until - parse_window(auto.window), until)
        status: dict[str, dict[str, Any]] = {}
        for key, written in self._written.items():
            current = live.get(key, written)
            group = [j for j in judgements if j.auto_rule == key]
            entry: dict[str, Any] = {"written": written, "live": current, "samples": len(group),
                                     "quality_target": auto.quality_target}  # fmt: skip
            if len(group) < auto.min_samples:
                entry["note"] = f"waiting for judgements ({len(group)} of {auto.min_samples})"
            else:
                try:
                    found = await asyncio.to_thread(calibrate, group, auto.quality_target, auto.confidence)
                except ValueError as exc:
                    entry["note"] = str(exc)
                else:
                    moved = min(max(found.threshold, current - auto.max_step), current + auto.max_step)
                    entry |= {
                        "calibrated": round(found.threshold, 4),
                        "estimated_quality": round(found.quality, 4),
                        "estimated_cloud_share": round(found.cloud_share, 4),
                        "live": round(moved, 4),
                    }
                    if abs(moved - current) > 1e-9:
                        log.info(
                            "auto-calibrate %s: threshold %.4f -> %.4f (calibrated %.4f on %d judgements: quality "
                            "%.3f at %.1f%% cloud)", key, current, moved, found.threshold, len(group), found.quality,
                            100 * found.cloud_share,
                        )  # fmt: skip
                    live[key] = moved
            entry["updated_at"] = int(until)
            status[key] = entry
            self._metrics.live_threshold.labels(key).set(live.get(key, written))
        self._router.use_thresholds(live)
        await self._shared.write({key: (self._written[key], value) for key, value in live.items()})
        self.status = status
        return status
