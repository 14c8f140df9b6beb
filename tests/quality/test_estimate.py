"""Quality retained and calibration on synthetic traffic whose true values are known."""

from __future__ import annotations

import pytest

from router.quality import calibrate, quality_retained
from tests.quality.synthetic import judged, population, true_quality


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_interval_contains_the_true_quality_retained(seed: int) -> None:
    score, local, cloud = population(6000, seed)
    truth = true_quality(score, local, cloud, 0.6)
    sample = judged(score, local, cloud, 0.6, share=0.1, explore=0.05, seed=seed)
    estimate = quality_retained(sample, seed=seed)
    assert estimate.low <= truth <= estimate.high
    assert estimate.high - estimate.low < 0.08  # a few hundred judgements: a usable interval


def test_unexplored_cloud_answers_count_as_the_cloud_s_quality() -> None:
    score, local, cloud = population(6000, 4)
    sample = [j for j in judged(score, local, cloud, 0.6, share=0.1, explore=0.0, seed=4)]
    assert all(j.stratum == "local" for j in sample)
    local_only = quality_retained(sample)
    with_cloud = quality_retained(sample, unexplored_cloud=float((score >= 0.6).sum()))
    assert with_cloud.value > local_only.value  # the cloud's answers are as good as the cloud's
    assert abs(with_cloud.value - true_quality(score, local, cloud, 0.6)) < 0.04


def test_too_few_judgements_give_no_number() -> None:
    score, local, cloud = population(200, 5)
    estimate = quality_retained(judged(score, local, cloud, 0.6, share=0.05, explore=0.0, seed=5), min_samples=30)
    assert estimate.value is None and "too few judged" in (estimate.note or "")
    assert "quality_retained" not in estimate.as_dict()


def test_a_calibrated_threshold_keeps_its_target_on_fresh_traffic() -> None:
    score, local, cloud = population(8000, 6)
    sample = judged(score, local, cloud, 0.6, share=0.15, explore=0.15, seed=6)
    found = calibrate(sample, target=0.9, confidence=0.9)
    fresh = population(20000, 7)
    assert true_quality(*fresh, found.threshold) >= 0.9
    assert found.cloud_share < 0.9  # and it did not get there by sending everything up
    assert found.quality_low >= 0.9 and found.quality >= found.quality_low


def test_a_lower_target_sends_less_to_the_cloud() -> None:
    score, local, cloud = population(8000, 8)
    sample = judged(score, local, cloud, 0.6, share=0.15, explore=0.15, seed=8)
    assert calibrate(sample, 0.8).cloud_share < calibrate(sample, 0.95).cloud_share


def test_calibration_needs_explored_cloud_answers() -> None:
    score, local, cloud = population(4000, 9)
    sample = judged(score, local, cloud, 0.6, share=0.2, explore=0.0, seed=9)
    with pytest.raises(ValueError, match=r"shadow\.explore"):
        calibrate(sample, 0.9)


def test_large_samples_get_the_delta_method_interval_that_the_bootstrap_gives() -> None:
    from router.quality.estimate import BOOTSTRAP_MAX

    score, local, cloud = population(40000, 12)
    sample = judged(score, local, cloud, 0.6, share=0.08, explore=0.05, seed=12)
    assert len(sample) > BOOTSTRAP_MAX
    fast = quality_retained(sample)
    slow = quality_retained(sample[:BOOTSTRAP_MAX])  # the bootstrap, on a part of it
    assert fast.low <= true_quality(score, local, cloud, 0.6) <= fast.high
    # Width scales as 1/sqrt(n): the linearised interval on n matches the bootstrap's on BOOTSTRAP_MAX.
    ratio = (fast.high - fast.low) / (slow.high - slow.low) * (len(sample) / BOOTSTRAP_MAX) ** 0.5
    assert 0.8 < ratio < 1.25
