"""What routing by the domain alone can reach, measured without the prompt's own outcome.

    python -m bench.domain_ceiling --labels router/classify/heads/qwen2.5-coder-1.5b-instruct.mmlu-letter.labels.jsonl \
        [--labels …mmlu-reason.labels.jsonl] [--draws 200]

`router eval --labels` prints an oracle row, "each domain's true mean gain": every prompt scored by the
mean of GPT-4's minus the local model's rightness over its domain's labels, the prompt's own included.
Issue 27 set its target at that level. But with a few dozen labels per domain, part of what that row
ranks is the sample's own luck: a domain whose labelled prompts happened to gain much is sent up first,
and on those very prompts it does gain much. This measures the same router honestly: in each domain,
the labels are split in two, the domain's mean gain is estimated on one part (n labels) and only the
other part (the evaluation half) is scored, so no prompt's own outcome is in its score. Per n it prints
APGR on the evaluation halves (mean over draws, each a new random split; the 95% range over draws is
how much it moves with which labels estimate and which are scored), beside the in-sample oracle on the
same halves. Where the rows reach n = 25 (50 labels per domain), an extrapolation to each domain's mean
known exactly, from a model of estimation noise fitted to the rows: APGR(n) = 0.5 + c * sqrt(n r /
(1 + n r)), the square root being the correlation of an n-label mean with the domain's true mean when
the spread of true means over the spread of one label's outcome is r (its limit, 0.5 + c, is a
model's guess, not a measurement).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from router.classify.evaluation import curve
from router.classify.labels import read_labels
from router.classify.train import EXCLUDED_DOMAINS


def _outcomes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    records = [
        r for r in read_labels([path]) if r["group"] not in EXCLUDED_DOMAINS and r.get("strong_right") is not None
    ]
    weak = np.array([r["local_right"] for r in records], dtype=float)
    strong = np.array([r["strong_right"] for r in records], dtype=float)
    return weak, strong, np.array([r["group"] for r in records])


def draw(
    weak: np.ndarray, strong: np.ndarray, groups: np.ndarray, estimate_n: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(APGR of the domain mean estimated on `estimate_n` other labels, APGR of the in-sample domain mean),
    both on one fresh evaluation half of every domain."""
    gain = strong - weak
    scored, honest, in_sample = [], [], []
    for domain in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == domain))
        half = len(members) // 2
        evaluated, estimated = members[:half], members[half:][:estimate_n]
        scored.append(evaluated)
        honest.append(np.full(half, gain[estimated].mean()))
        in_sample.append(np.full(half, gain[evaluated].mean()))
    idx = np.concatenate(scored)
    ties = rng.random(len(idx)) * 1e-9  # within a domain the score says nothing: break its ties at random
    return tuple(curve(np.concatenate(s) + ties, weak[idx], strong[idx]).apgr for s in (honest, in_sample))


def extrapolated(sizes: np.ndarray, apgr: np.ndarray) -> tuple[float, float]:
    """(0.5 + c, r) of the least-squares fit of APGR(n) = 0.5 + c * sqrt(n r / (1 + n r)), over a grid of r."""
    best = (np.inf, 0.0, 0.0)
    for r in np.logspace(-4, 2, 4000):
        x = np.sqrt(sizes * r / (1 + sizes * r))
        c = float((apgr - 0.5) @ x / (x @ x))
        error = float(((0.5 + c * x - apgr) ** 2).sum())
        best = min(best, (error, c, float(r)))
    return 0.5 + best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, action="append", required=True, help="A labels file (repeatable).")
    parser.add_argument("--draws", type=int, default=200, help="Splits drawn per row.")
    args = parser.parse_args()
    for path in args.labels:
        weak, strong, groups = _outcomes(path)
        smallest = min(int((groups == g).sum()) for g in np.unique(groups))
        half = smallest - smallest // 2
        sizes = sorted({n for n in (5, 10, 25, 50, half) if n <= half})
        print(f"{path.name}: {len(weak)} labels, {len(np.unique(groups))} domains, at least {smallest} each; "
              f"scored on half of each domain ({smallest // 2}+)")  # fmt: skip
        print(f"  {'domain mean estimated on n other labels of the domain':<58} {'APGR (95% range)':<24} in sample")
        means = []
        for n in sizes:
            rng = np.random.default_rng(n)
            honest, in_sample = np.array([draw(weak, strong, groups, n, rng) for _ in range(args.draws)]).T
            low, high = np.percentile(honest, [2.5, 97.5])
            means.append(honest.mean())
            print(f"  {f'n = {n}':<58} {honest.mean():.3f} [{low:.3f}, {high:.3f}]   {in_sample.mean():.3f}")
        if max(sizes) >= 25:  # below, the fit has too short a range of n to say where it levels off
            ceiling, r = extrapolated(np.array(sizes, dtype=float), np.array(means))
            print(f"  extrapolated to each domain's mean known exactly: {ceiling:.3f} (noise model, r = {r:.4f})")


if __name__ == "__main__":
    main()
