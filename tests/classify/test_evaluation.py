"""RouteLLM's routing metrics: the curve, APGR and CPT."""

from __future__ import annotations

import numpy as np
import pytest

from router.classify.evaluation import curve, random_curve, summary

WEAK = np.array([1, 0, 0, 1, 0, 1, 0, 1], dtype=float)
STRONG = np.array([1, 1, 1, 1, 0, 1, 1, 1], dtype=float)
NEEDS = ((WEAK < 0.5) & (STRONG >= 0.5)).astype(float)


def test_the_ends_of_the_curve_are_the_weak_and_the_strong_model() -> None:
    c = curve(np.arange(8.0), WEAK, STRONG)
    assert c.quality[0] == pytest.approx(WEAK.mean())
    assert c.quality[-1] == pytest.approx(STRONG.mean())
    assert c.pgr[0] == pytest.approx(0.0) and c.pgr[-1] == pytest.approx(1.0)


def test_an_oracle_beats_random_which_beats_an_anti_oracle() -> None:
    oracle, anti = curve(NEEDS, WEAK, STRONG), curve(-NEEDS, WEAK, STRONG)
    random = random_curve(WEAK, STRONG).apgr
    assert random == pytest.approx(0.5)
    assert oracle.apgr > random > anti.apgr
    assert 2 / 8 < oracle.cpt(1.0) <= 3 / 8  # the three prompts that need the strong model, on a 1% grid


def test_summary_has_the_documented_keys() -> None:
    assert set(summary(curve(NEEDS, WEAK, STRONG))) == {"apgr", "cpt50", "cpt80"}
