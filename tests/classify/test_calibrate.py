"""Calibration: the threshold that sends a requested share of a sample to the cloud."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from router.classify.calibrate import read_prompts, share_at, threshold_for_share


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.9])
def test_the_threshold_hits_the_share_within_two_points(share: float) -> None:
    scores = np.random.default_rng(7).random(500)
    assert abs(share_at(scores, threshold_for_share(scores, share)) - share) <= 0.02


def test_zero_and_full_shares() -> None:
    scores = np.array([0.1, 0.5, 0.9])
    assert share_at(scores, threshold_for_share(scores, 0.0)) == 0.0
    assert share_at(scores, threshold_for_share(scores, 1.0)) == 1.0


def test_prompts_are_read_as_lines_or_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text('plain prompt\n{"prompt": "json prompt"}\n\n{"text": "other"}\n')
    assert read_prompts(path) == ["plain prompt", "json prompt", "other"]


def test_router_calibrate_prints_a_threshold_that_hits_the_share(tmp_path: Path) -> None:
    prompts = [f"Prove lemma {i} about primes, step by step." for i in range(20)]
    prompts += [f"Say hello to friend number {i}." for i in range(20)]
    path = tmp_path / "sample.txt"
    path.write_text("\n".join(prompts))
    result = subprocess.run(
        [sys.executable, "-m", "router", "calibrate", str(path), "--target-cloud-share", "0.3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "30.0% of 40 prompts to the cloud" in result.stdout
    assert "route: auto" in result.stdout
