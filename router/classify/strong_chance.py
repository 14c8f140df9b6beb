"""P(the strong model answers right) from the prompt: what the cascade's `expected_gain` weighs the local
answer's own probability against (`router train --strong-chance`, shipped as `strong_chance.npz`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from router.classify.data import Dataset
from router.classify.embedding_service import TextEmbedder
from router.classify.head import Head
from router.classify.train import (
    EXCLUDED_DOMAINS,
    EXPECTED_GAIN_C,
    cached_embeddings,
    logreg_head,
    selection_folds,
    training_split,
)
from router.errors import ConfigError


def train_strong_chance(
    data: Dataset, embedder: TextEmbedder, cache_dir: Path | None = None, hold_out: bool = False, folds: int = 8
) -> tuple[Head, float]:
    """P(the strong model answers right): a logistic regression on the embedding, fitted to the strong
    model's recorded outcomes on every clean domain (all but a fixed quarter with `hold_out`). Returns the
    head and its AUROC on whole domains held out (`folds` domain-grouped folds).

    What it is for: the cascade's `expected_gain` weighs it against the local answer's own probability. On
    the default model's MMLU labels that ranks escalations far better than the answer's doubt alone, as a
    prompt the strong model often gets wrong too gains nothing by going up (bench/RESULTS.md)."""
    from sklearn.metrics import roc_auc_score

    train_set, test_domains = training_split(data, hold_out)
    right = (train_set.strong >= 0.5).astype(int)
    if len(set(right.tolist())) < 2:
        raise ConfigError("the strong model's recorded outcomes are all alike: there is no chance to learn")
    emb = cached_embeddings(embedder, train_set.prompts, cache_dir)
    fold = selection_folds(train_set.groups, folds)
    held_out = np.zeros(len(train_set))
    for k in np.unique(fold):
        held = fold == k
        fitted = logreg_head(emb[~held], train_set.subset(~held).prompts, right[~held], EXPECTED_GAIN_C, False)
        held_out[held] = fitted.score(emb[held], [])
    auroc = float(roc_auc_score(right, held_out))
    head = logreg_head(emb, train_set.prompts, right, EXPECTED_GAIN_C, use_features=False)
    meta = {
        **head.meta,
        "chosen": f"strong-chance logreg(C={EXPECTED_GAIN_C})",
        "target": "strong model right",
        "heldout_auroc": round(auroc, 4),
        "train_domains": sorted(set(train_set.groups)),
        "test_domains": sorted(test_domains),
        "excluded_domains": EXCLUDED_DOMAINS,
        "train_rows": len(train_set),
    }
    return replace(head, meta=meta), auroc
