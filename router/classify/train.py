"""Train the escalation head on labelled routing data, choosing the model family on held-out domains.

Split by MMLU domain, never by row: a quarter of the domains is the test set (`held_out_domains`),
never seen here; of the rest, a quarter is the validation set that picks the family and its settings,
and the winner is refitted on all training domains. Every step is seeded, so the same data gives the
same head.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from router.classify.data import Dataset, held_out_domains
from router.classify.embedding_service import TextEmbedder
from router.classify.evaluation import curve
from router.classify.features import feature_matrix
from router.classify.head import Head

log = logging.getLogger(__name__)
SEED = 20261122


def cached_embeddings(embedder: TextEmbedder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """Embeddings of `texts`, from a cache file keyed by the texts' hash when one exists."""
    if cache_dir is None:
        return embedder.embed(texts)
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    path = cache_dir / f"{digest}-{embedder.dimensions}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


Scorer = Callable[[np.ndarray, list[str]], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """A model family with its settings: `fit(embeddings, data)` gives a Head (shippable) or a bare scorer."""

    name: str
    fit: Callable[[np.ndarray, Dataset], Head | Scorer]
    shippable: bool = True
    """False for families that would need the training data at serving time (kNN)."""


def _fitted_head(
    kind: str, emb: np.ndarray, texts: list[str], use_features: bool, fit: Callable[[np.ndarray], tuple], meta: dict
) -> Head:
    """Standardise the text features, fit the layers on [embedding, features], and wrap them as a Head."""
    features = feature_matrix(texts)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    inputs = Head(kind, (), mean, std, use_features, {}).inputs(emb, texts)
    return Head(kind, fit(inputs), mean, std, use_features, meta)


def logreg_head(emb: np.ndarray, texts: list[str], y: np.ndarray, c: float, use_features: bool) -> Head:
    from sklearn.linear_model import LogisticRegression

    def fit(x: np.ndarray) -> tuple:
        model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y)
        return ((model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)),)

    return _fitted_head("logreg", emb, texts, use_features, fit, {"C": c})


def ridge_gain_head(emb: np.ndarray, texts: list[str], gain: np.ndarray, alpha: float, use_features: bool) -> Head:
    """Regress the strong model's quality gain over the weak one (-1..1) and rank by it."""
    from sklearn.linear_model import Ridge

    def fit(x: np.ndarray) -> tuple:
        model = Ridge(alpha=alpha).fit(x, gain)
        # Scaled into the sigmoid's lively range, so that scores spread over 0..1 for thresholds.
        return ((4 * model.coef_.reshape(-1, 1).astype(np.float32), 4 * np.array([model.intercept_], np.float32)),)

    return _fitted_head("ridge-gain", emb, texts, use_features, fit, {"alpha": alpha})


def mlp_head(emb: np.ndarray, texts: list[str], y: np.ndarray, hidden: int, alpha: float) -> Head:
    from sklearn.neural_network import MLPClassifier

    def fit(x: np.ndarray) -> tuple:
        model = MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=300, early_stopping=True, random_state=SEED
        ).fit(x, y)
        return tuple(
            (w.astype(np.float32), b.astype(np.float32)) for w, b in zip(model.coefs_, model.intercepts_, strict=True)
        )

    return _fitted_head("mlp", emb, texts, True, fit, {"hidden": hidden, "alpha": alpha})


def knn_scorer(train_emb: np.ndarray, y: np.ndarray, k: int = 50) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    """RouteLLM's similarity-weighted idea: the label mean of the k most similar training prompts."""

    def score(emb: np.ndarray, texts: list[str]) -> np.ndarray:
        sims = emb @ train_emb.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        weights = np.exp(10 * np.take_along_axis(sims, top, axis=1))
        return (weights * y[top]).sum(axis=1) / weights.sum(axis=1)

    return score


def _features(use: bool) -> str:
    return ", +features" if use else ""


def _logreg(c: float, use_features: bool) -> Candidate:
    return Candidate(
        f"logreg(C={c}{_features(use_features)})",
        lambda emb, data: logreg_head(emb, data.prompts, data.needs_strong, c, use_features),
    )


def _ridge(alpha: float, use_features: bool) -> Candidate:
    return Candidate(
        f"ridge-gain(alpha={alpha}{_features(use_features)})",
        lambda emb, data: ridge_gain_head(emb, data.prompts, data.strong - data.weak, alpha, use_features),
    )


def _mlp(hidden: int, alpha: float) -> Candidate:
    return Candidate(
        f"mlp({hidden}, alpha={alpha})", lambda emb, data: mlp_head(emb, data.prompts, data.needs_strong, hidden, alpha)
    )


def _knn(k: int) -> Candidate:
    return Candidate(f"knn(k={k})", lambda emb, data: knn_scorer(emb, data.needs_strong, k), shippable=False)


CANDIDATES = (
    _logreg(0.1, True),
    _logreg(1.0, False),
    _logreg(1.0, True),
    _ridge(10.0, True),
    _ridge(100.0, False),
    _ridge(100.0, True),
    _mlp(64, 1e-1),
    _knn(50),
)


@dataclass(frozen=True)
class TrainResult:
    head: Head
    validation: dict[str, float]
    """Mean APGR of every candidate over the domain folds."""
    chosen: str


def _scorer(fitted: Head | Scorer) -> Scorer:
    return fitted.score if isinstance(fitted, Head) else fitted


def train(mmlu: Dataset, embedder: TextEmbedder, cache_dir: Path | None = None, folds: int = 4) -> TrainResult:
    """Pick the family by mean APGR over `folds` folds of whole training domains; refit the winner on all."""
    test_domains = held_out_domains(mmlu.groups)
    train_set = mmlu.subset(np.array([g not in test_domains for g in mmlu.groups]), "train")
    emb = cached_embeddings(embedder, train_set.prompts, cache_dir)
    domains = sorted(set(train_set.groups))
    fold_of = {d: i % folds for i, d in enumerate(domains)}
    fold = np.array([fold_of[g] for g in train_set.groups])
    scores: dict[str, float] = {}
    for candidate in CANDIDATES:
        apgrs = []
        for k in range(folds):
            fit_part, val_part = train_set.subset(fold != k), train_set.subset(fold == k)
            scorer = _scorer(candidate.fit(emb[fold != k], fit_part))
            apgrs.append(curve(scorer(emb[fold == k], val_part.prompts), val_part.weak, val_part.strong).apgr)
        scores[candidate.name] = round(float(np.mean(apgrs)), 4)
        log.info("cross-validated APGR %.4f (folds %s)  %s", scores[candidate.name], np.round(apgrs, 3), candidate.name)
    # Refitted on all training domains; only families that yield a Head can ship.
    heads = {c.name: c for c in CANDIDATES if c.shippable}
    chosen = max(heads, key=lambda name: scores[name])
    head = heads[chosen].fit(emb, train_set)
    assert isinstance(head, Head)
    meta = {
        **head.meta,
        "chosen": chosen,
        "cv_apgr": scores,
        "train_domains": domains,
        "test_domains": sorted(test_domains),
        "train_rows": len(train_set),
    }
    return TrainResult(replace(head, meta=meta), scores, chosen)
