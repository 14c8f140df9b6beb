"""`router calibrate --quality-target` and `router train --from-traffic` on a gateway's stored judgements."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from router.classify.head import Head
from router.quality import SqliteJudgementStore
from tests.quality.synthetic import judged, population, true_quality


def _gateway_with_judgements(tmp_path: Path, explore: float = 0.2) -> tuple[Path, tuple]:
    data = population(6000, 31)
    store = SqliteJudgementStore(tmp_path / "ledger.sqlite")

    async def fill() -> None:
        await store.add(judged(*data, 0.6, share=0.2, explore=explore, seed=31))
        await store.close()

    asyncio.run(fill())
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({"ledger": {"path": str(tmp_path / "ledger.sqlite")}}))
    return config, data


def _router(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=600)


def test_calibrate_for_a_quality_target_from_judged_traffic(tmp_path: Path) -> None:
    config, _ = _gateway_with_judgements(tmp_path)
    result = _router("calibrate", "--quality-target", "0.9", "--config", str(config), "--window", "7d")
    assert result.returncode == 0, result.stderr
    threshold = float(re.search(r"threshold (\d\.\d+):", result.stdout).group(1))  # type: ignore[union-attr]
    assert "route: auto" in result.stdout and "with 90% confidence" in result.stdout
    assert true_quality(*population(20000, 32), threshold) >= 0.9  # traffic it never saw
    assert threshold > 0.3  # and not everything to the cloud


def test_calibrate_says_what_is_missing_without_explored_cloud_answers(tmp_path: Path) -> None:
    config, _ = _gateway_with_judgements(tmp_path, explore=0.0)
    result = _router("calibrate", "--quality-target", "0.9", "--config", str(config))
    assert result.returncode == 2
    assert "shadow.explore" in result.stderr


def test_train_from_traffic_fits_a_head_on_the_judgements(tmp_path: Path) -> None:
    config, (score, local, cloud) = _gateway_with_judgements(tmp_path)
    out = tmp_path / "head.npz"
    result = _router("train", "--from-traffic", "--config", str(config), "--out", str(out), "--repeats", "5")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "judged requests from traffic" in result.stdout
    head = Head.load(out)
    assert head.meta["trained_on"] == "judged traffic" and not head.use_features  # no texts were kept
    # The stored "embedding" is (score, 1 - score): the head must learn that a high score needs the cloud.
    vectors = np.stack([score, 1 - score], axis=1).astype(np.float32)
    ranked = head.score(vectors, [""] * len(score))
    needs = (~local) & cloud
    assert ranked[needs].mean() > ranked[~needs].mean() + 0.05


def test_policy_diff_estimates_the_quality_each_policy_keeps(tmp_path: Path) -> None:
    from router.quality import Judgement
    from tests.quality.synthetic import BASE_AT

    found = []
    for i in range(120):
        hard = i % 3 == 0  # the local model gets the maths wrong, the cloud gets it right
        found.append(Judgement(
            BASE_AT + i, f"r{i}", "local", "local", "default", "-", "local-pool", "gpt-4o-mini", "judge", "judge",
            0.0 if hard else 1.0, 1.0, 0.5, prompt=f"{'Solve this maths problem' if hard else 'Say hello'} #{i}",
        ))  # fmt: skip
    store = SqliteJudgementStore(tmp_path / "ledger.sqlite")

    async def fill() -> None:
        await store.add(found)
        await store.close()

    asyncio.run(fill())
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({"ledger": {"path": str(tmp_path / "ledger.sqlite")}}))
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("version: 1\ndefault: {route: local}\n")
    rules = "rules:\n  - name: maths\n    when: {keywords: [maths]}\n    route: cloud\n"
    new.write_text(f"version: 1\ndefault: {{route: local}}\n{rules}")
    result = _router("policy", "diff", str(old), str(new), "--judged", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    quality = json.loads(result.stdout)["quality"]
    assert quality["judged"] == 120 and quality["old_matches_served"] == 120
    assert quality["old"]["quality_retained"] == pytest.approx(80 / 120, abs=1e-4)
    assert quality["new"]["quality_retained"] == pytest.approx(1.0)
    assert quality["change"]["low"] > 0.2  # paired: the gain is certain, not within the noise
    text = _router("policy", "diff", str(old), str(new), "--judged", "--config", str(config)).stdout
    assert "40 of 120 requests change route" in text and "quality retained on 120 judged requests" in text
