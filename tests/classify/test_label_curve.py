"""bench.label_curve: routers fitted on n labels a domain, scored out of fold on every label."""

from __future__ import annotations

import numpy as np

from bench.label_curve import GAIN, HEAD, scores_fitted_on, subsample
from router.classify.labelled_set import labelled_set
from router.classify.train import selection_folds

DOMAINS = [f"domain{d}" for d in range(6)]


def _records(flip: set[str] = frozenset()) -> list[dict]:
    rng = np.random.default_rng(0)
    confidence = {"mean_logprob": -0.5, "min_logprob": -1.0, "mean_entropy": 0.7}
    records = []
    for d, group in enumerate(DOMAINS):
        for n in range(12):
            local_right = bool(rng.random() < 0.2 + 0.1 * d)
            records.append({"id": f"{group}:{n}", "group": group, "prompt": f"{group} question {n}",
                            "local_model": "m", "local_right": local_right ^ (group in flip),
                            "strong_right": bool(rng.random() < 0.8),
                            "confidence": confidence})  # fmt: skip
    return records


def _embedding(labelled) -> np.ndarray:
    # A domain's prompts sit together, as a real embedding's do: a head can learn each domain's level.
    rng = np.random.default_rng(1)
    centres = {g: rng.normal(size=8) for g in DOMAINS}
    return np.stack([centres[g] + 0.1 * rng.normal(size=8) for g in labelled.data.groups])


def test_a_subsample_takes_n_labels_of_every_domain() -> None:
    groups = np.array(["a"] * 10 + ["b"] * 3)
    mask = subsample(groups, 4, np.random.default_rng(0))
    assert mask[groups == "a"].sum() == 4 and mask[groups == "b"].sum() == 3  # all of a smaller domain


def test_a_held_out_domain_is_scored_without_its_own_outcomes() -> None:
    labelled = labelled_set(_records())
    emb = _embedding(labelled)
    fold = selection_folds(labelled.data.groups, 3)
    held = fold == fold[0]
    held_domains = {g for g, h in zip(labelled.data.groups, held, strict=True) if h}
    mask = subsample(np.asarray(labelled.data.groups), 6, np.random.default_rng(0))
    before = scores_fitted_on(labelled, emb, fold, mask, prior=None)
    # The held-out domains' outcomes turned around: their own scores must not move (nothing of theirs is
    # fitted on), while the other folds' scores, fitted on them, do.
    after = scores_fitted_on(labelled_set(_records(flip=held_domains)), emb, fold, mask, prior=None)
    for name in (HEAD, GAIN):
        np.testing.assert_allclose(before[name][held], after[name][held])
        assert not np.allclose(before[name][~held], after[name][~held])
