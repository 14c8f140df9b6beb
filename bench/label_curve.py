"""How the router for the real pair grows with the labels a domain: is labelling more worth its hours?

    python -m bench.label_curve --labels router/classify/heads/qwen2.5-coder-1.5b-instruct.mmlu-reason.labels.jsonl \
        --tasks ../shared/data/routing/mmlu-answers [--mmlu ../shared/data/routing/mmlu] \
        [--per-domain 8 16 24] [--draws 3]

`router eval --labels` scores every router out of fold on all the labels there are. This asks what more
labels would buy: for each n, a seeded draw of n labels in every domain is all a router may fit on, and
it is scored, out of fold as in `router eval` (the same 8 domain-grouped folds, whole domains held out),
on every label of the held-out domains, so every row is scored on the same prompts. Rows: the head
family `router train` picks (fitted to the labels), the expected gain from the embedding, and with
`--mmlu` the shipped cascade rule's P(strong right) (its strong half also fitted to GPT-4's recorded
outcomes on the other domains) against the answer's first 3 tokens. Per n: the mean APGR over the draws
and their range. Last, a straight line in log2(n) fitted to the head's means and read at 100 labels a
domain: a trend's extrapolation, not a measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from router.classify.evaluation import curve
from router.classify.labelled_set import LabelledSet

HEAD = "head fitted to the labels (the family `router train` picks)"
GAIN = "expected gain from the embedding"
RULE = "the shipped cascade rule (P(strong right) - first 3 tokens)"


def subsample(groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A mask of n labels drawn in every domain (all of a domain's when it has fewer)."""
    keep = np.zeros(len(groups), dtype=bool)
    for domain in np.unique(groups):
        keep[rng.permutation(np.flatnonzero(groups == domain))[:n]] = True
    return keep


def scores_fitted_on(
    labelled: LabelledSet, emb: np.ndarray, fold: np.ndarray, fit_mask: np.ndarray, prior: tuple | None
) -> dict[str, np.ndarray]:
    """Every label scored by routers fitted on the labels in `fit_mask` outside its own fold."""
    from router.classify.head import SHIPPED_HEAD, Head
    from router.classify.label_eval import expected_gain_out_of_fold, first_tokens_probability, head_family
    from router.classify.train import EXPECTED_GAIN_C, out_of_fold_scores

    data = labelled.data
    family = head_family(Head.load(SHIPPED_HEAD).meta["chosen"])  # as `router eval --labels` picks it
    out = {name: np.zeros(len(data)) for name in (HEAD, GAIN, *([RULE] if prior else []))}
    first = first_tokens_probability(labelled)
    for k in np.unique(fold):
        held = fold == k
        rows = held | (fit_mask & ~held)
        two = np.where(held[rows], 0, 1)  # fold 0: scored; fold 1: what the routers may fit on
        part = data.subset(rows)
        out[HEAD][held] = out_of_fold_scores(family, emb[rows], part, two)[two == 0]
        strong, local = expected_gain_out_of_fold(emb[rows], part, two, c=EXPECTED_GAIN_C)
        out[GAIN][held] = (strong - local)[two == 0]
        if prior:
            strong, _ = expected_gain_out_of_fold(emb[rows], part, two, prior, c=EXPECTED_GAIN_C)
            out[RULE][held] = strong[two == 0] - first[held]
    return out


def main() -> None:
    from router.classify.data import read_mmlu
    from router.classify.train import cached_embeddings, selection_folds, training_split
    from router.cli.learning import _embedder, _labelled

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, action="append", required=True)
    parser.add_argument("--tasks", type=Path, action="append", required=True)
    parser.add_argument("--mmlu", type=Path, help="GPT-4's recorded outcomes: adds the shipped cascade rule's row.")
    parser.add_argument("--per-domain", type=int, nargs="+", default=[8, 16, 24])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, help="Embedding cache (as `router eval --cache-dir`).")
    args = parser.parse_args()

    labelled = _labelled(args.labels, args.tasks, early_tokens=3)
    data, groups = labelled.data, np.asarray(labelled.data.groups)
    embedder = _embedder(None)
    emb = cached_embeddings(embedder, data.prompts, args.cache_dir)
    prior = None
    if args.mmlu:
        recorded = training_split(read_mmlu(args.mmlu), hold_out=False)[0]
        prior = (cached_embeddings(embedder, recorded.prompts, args.cache_dir), recorded)
    fold = selection_folds(data.groups, 8)
    most = max(int((groups == g).sum()) for g in np.unique(groups))
    sizes = sorted({n for n in args.per_domain if n < most} | {most})
    print(f"{len(data)} labels, {len(np.unique(groups))} domains, up to {most} a domain; 8 domain-grouped folds")
    head_means = []
    for n in sizes:
        draws = 1 if n == most else args.draws  # all the labels: one draw is all there is
        apgr: dict[str, list[float]] = {}
        for seed in range(draws):
            mask = subsample(groups, n, np.random.default_rng(seed))
            for name, values in scores_fitted_on(labelled, emb, fold, mask, prior).items():
                apgr.setdefault(name, []).append(curve(values, data.weak, data.strong).apgr)
        head_means.append(float(np.mean(apgr[HEAD])))
        for name, values in apgr.items():
            spread = f" [{min(values):.3f}, {max(values):.3f}]" if len(values) > 1 else ""
            print(f"  n = {n:>3} a domain  {name:<62} {np.mean(values):.3f}{spread}")
    slope, intercept = np.polyfit(np.log2(sizes), head_means, 1)
    print(f"head: {slope:+.4f} APGR per doubling of the labels; the line read at 100 a domain: "
          f"{intercept + slope * np.log2(100):.3f} (extrapolated, not measured)")  # fmt: skip


if __name__ == "__main__":
    main()
