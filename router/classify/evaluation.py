"""Score routers the way RouteLLM does: quality against the share of calls sent to the strong model.

A router gives each prompt a score; for a share x of strong calls, the top-x prompts by score go to the
strong model. Quality is the mean outcome of the model each prompt went to; PGR = (quality - weak) /
(strong - weak); APGR is the area under PGR over x in [0, 1]; CPT(p) the smallest x with PGR ≥ p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Curve:
    shares: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray

    @property
    def apgr(self) -> float:
        return float(np.trapezoid(self.pgr, self.shares))

    def cpt(self, target: float) -> float:
        reached = np.flatnonzero(self.pgr >= target - 1e-9)
        return float(self.shares[reached[0]]) if reached.size else 1.0


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> Curve:
    n = len(scores)
    # Highest scores first; ties broken by position so a constant score behaves like "no information".
    order = np.lexsort((np.arange(n), -scores))
    gain = (strong - weak)[order]
    cumulative = np.concatenate([[0.0], np.cumsum(gain)])
    counts = np.round(GRID * n).astype(int)
    quality = (weak.sum() + cumulative[counts]) / n
    spread = strong.mean() - weak.mean()
    pgr = (quality - weak.mean()) / spread if spread > 0 else np.zeros_like(quality)
    return Curve(GRID, quality, pgr)


def random_curve(weak: np.ndarray, strong: np.ndarray) -> Curve:
    """The expected curve of a random router: quality rises linearly with the share."""
    quality = weak.mean() + GRID * (strong.mean() - weak.mean())
    spread = strong.mean() - weak.mean()
    return Curve(GRID, quality, (quality - weak.mean()) / spread if spread > 0 else np.zeros_like(GRID))


def summary(c: Curve) -> dict[str, float]:
    return {"apgr": round(c.apgr, 4), "cpt50": round(c.cpt(0.5), 4), "cpt80": round(c.cpt(0.8), 4)}


def bootstrap(
    scores: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    groups: list[str] | None = None,
    reps: int = 1000,
    seed: int = 7,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of APGR, CPT(50%) and CPT(80%), resampling prompts within each group.

    Stratified by group (MMLU domain): every draw keeps the set's mix of domains and resamples the prompts
    inside each, so the interval is that of this test set's prompts. (Resampling whole domains instead
    lets a draw's strong-weak gap come near zero, where PGR is undefined, when a set has a dozen domains
    of which some show no gap.)
    """
    rng = np.random.default_rng(seed)
    group_of = np.array(groups) if groups is not None else np.zeros(len(scores), dtype=int)
    members = [np.flatnonzero(group_of == g) for g in np.unique(group_of)]
    draws: dict[str, list[float]] = {"apgr": [], "cpt50": [], "cpt80": []}
    for _ in range(reps):
        idx = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        c = curve(scores[idx], weak[idx], strong[idx])
        draws["apgr"].append(c.apgr)
        draws["cpt50"].append(c.cpt(0.5))
        draws["cpt80"].append(c.cpt(0.8))
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items()}
