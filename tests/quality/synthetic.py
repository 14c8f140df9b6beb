"""Synthetic judged traffic whose true quality retained is known: for the estimate and calibration tests."""

from __future__ import annotations

import time

import numpy as np

from router.quality import Judgement

BASE_AT = float(int(time.time()) - 86400)
"""When the synthetic judgements start: a day ago (stores prune what is older than their retention)."""


def population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(escalation score, local right, cloud right) per request: the higher the score, the likelier the
    local model fails where the cloud does not."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    local = rng.random(n) > 0.15 + 0.7 * score
    cloud = rng.random(n) > 0.08
    return score, local, cloud


def true_quality(score: np.ndarray, local: np.ndarray, cloud: np.ndarray, threshold: float) -> float:
    served = np.where(score >= threshold, cloud, local)
    return float(served.sum() / cloud.sum())


def judged(
    score: np.ndarray,
    local: np.ndarray,
    cloud: np.ndarray,
    threshold: float,
    share: float,
    explore: float,
    seed: int,
    start: float = BASE_AT,
) -> list[Judgement]:
    """The judgements shadowing would store: local answers sampled at `share`, cloud ones at `explore`;
    request i judged at `start` + i seconds."""
    rng = np.random.default_rng([seed, 1])  # not the population's own stream
    found = []
    for i in range(len(score)):
        stratum = "cloud" if score[i] >= threshold else "local"
        p = explore if stratum == "cloud" else share
        if rng.random() >= p:
            continue
        found.append(
            Judgement(
                at=start + i, request_id=f"r{i}", route=stratum, stratum=stratum, rule="classifier",
                tenant="-", model="local", reference="cloud", judge="judge", method="judge",
                local_score=float(local[i]), reference_score=float(cloud[i]), share=p,
                escalation=float(score[i]), threshold=threshold, auto_rule="default",
                embedding=(float(np.float16(score[i])), float(np.float16(1.0 - score[i]))),  # as stored
            )
        )  # fmt: skip
    return found
