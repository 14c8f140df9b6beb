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
