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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.classify.data import Dataset, held_out_domains
from router.classify.embedder import Embedder
from router.classify.evaluation import curve
from router.classify.features import feature_matrix
from router.classify.head import Head

log = logging.getLogger(__name__)
SEED = 20261122


def cached_embeddings(embedder: Embedder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
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


@dataclass(frozen=True)
class Candidate:
    name: str
    fit: Callable[[np.ndarray, list[str], np.ndarray], Callable[[np.ndarray, list[str]], np.ndarray]]


def _standardiser(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    features = feature_matrix(texts)
    return features.mean(axis=0), features.std(axis=0) + 1e-6


def _logreg(c: float, use_features: bool) -> Candidate:
    def fit(emb: np.ndarray, texts: list[str], y: np.ndarray) -> Callable[[np.ndarray, list[str]], np.ndarray]:
        return logreg_head(emb, texts, y, c, use_features).score

    return Candidate(f"logreg(C={c}{', +features' if use_features else ''})", fit)


def logreg_head(emb: np.ndarray, texts: list[str], y: np.ndarray, c: float, use_features: bool) -> Head:
    from sklearn.linear_model import LogisticRegression

    mean, std = _standardiser(texts)
    probe = Head("logreg", (), mean, std, use_features, {})
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    model.fit(probe.inputs(emb, texts), y)
    layers = ((model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)),)
    return Head("logreg", layers, mean, std, use_features, {"C": c})


def _ridge(alpha: float, use_features: bool) -> Candidate:
    def fit(emb: np.ndarray, texts: list[str], y: np.ndarray) -> Callable[[np.ndarray, list[str]], np.ndarray]:
        raise AssertionError("ridge is fitted on the quality gain; see fit_gain")  # pragma: no cover

    return Candidate(f"ridge-gain(alpha={alpha}{', +features' if use_features else ''})", fit)


def ridge_gain_head(emb: np.ndarray, texts: list[str], gain: np.ndarray, alpha: float, use_features: bool) -> Head:
    """Regress the strong model's quality gain over the weak one (-1..1) and rank by it."""
    from sklearn.linear_model import Ridge

    mean, std = _standardiser(texts)
    probe = Head("ridge-gain", (), mean, std, use_features, {})
    model = Ridge(alpha=alpha).fit(probe.inputs(emb, texts), gain)
    # Scaled into the sigmoid's lively range, so that scores spread over 0..1 for thresholds.
    layers = ((4 * model.coef_.reshape(-1, 1).astype(np.float32), 4 * np.array([model.intercept_], np.float32)),)
    return Head("ridge-gain", layers, mean, std, use_features, {"alpha": alpha})


def _mlp(hidden: int, alpha: float) -> Candidate:
    def fit(emb: np.ndarray, texts: list[str], y: np.ndarray) -> Callable[[np.ndarray, list[str]], np.ndarray]:
        return mlp_head(emb, texts, y, hidden, alpha).score

    return Candidate(f"mlp({hidden}, alpha={alpha})", fit)


def mlp_head(emb: np.ndarray, texts: list[str], y: np.ndarray, hidden: int, alpha: float) -> Head:
    from sklearn.neural_network import MLPClassifier

    mean, std = _standardiser(texts)
    probe = Head("mlp", (), mean, std, True, {})
    model = MLPClassifier(
        hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=300, early_stopping=True, random_state=SEED
    )
    model.fit(probe.inputs(emb, texts), y)
    layers = tuple(
        (w.astype(np.float32), b.astype(np.float32)) for w, b in zip(model.coefs_, model.intercepts_, strict=True)
    )
    return Head("mlp", layers, mean, std, True, {"hidden": hidden, "alpha": alpha})


def knn_scorer(train_emb: np.ndarray, y: np.ndarray, k: int = 50) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    """RouteLLM's similarity-weighted idea: the label mean of the k most similar training prompts."""

    def score(emb: np.ndarray, texts: list[str]) -> np.ndarray:
        sims = emb @ train_emb.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        weights = np.exp(10 * np.take_along_axis(sims, top, axis=1))
        return (weights * y[top]).sum(axis=1) / weights.sum(axis=1)

    return score


def _knn(k: int) -> Candidate:
    def fit(emb: np.ndarray, texts: list[str], y: np.ndarray) -> Callable[[np.ndarray, list[str]], np.ndarray]:
        return knn_scorer(emb, y, k)

    return Candidate(f"knn(k={k})", fit)


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


def _fit(candidate: Candidate, emb: np.ndarray, data: Dataset) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    if candidate.name.startswith("ridge-gain"):
        return _refit(candidate.name, emb, data).score
    return candidate.fit(emb, data.prompts, data.needs_strong)


def train(mmlu: Dataset, embedder: Embedder, cache_dir: Path | None = None, folds: int = 4) -> TrainResult:
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
            scorer = _fit(candidate, emb[fold != k], fit_part)
            apgrs.append(curve(scorer(emb[fold == k], val_part.prompts), val_part.weak, val_part.strong).apgr)
        scores[candidate.name] = round(float(np.mean(apgrs)), 4)
        log.info("cross-validated APGR %.4f (folds %s)  %s", scores[candidate.name], np.round(apgrs, 3), candidate.name)
    shippable = {name: s for name, s in scores.items() if not name.startswith("knn")}
    chosen = max(shippable, key=lambda name: shippable[name])
    head = _refit(chosen, emb, train_set)
    meta = {
        **head.meta,
        "chosen": chosen,
        "cv_apgr": scores,
        "train_domains": domains,
        "test_domains": sorted(test_domains),
        "train_rows": len(train_set),
    }
    return TrainResult(
        Head(head.kind, head.layers, head.feature_mean, head.feature_std, head.use_features, meta), scores, chosen
    )


def _refit(name: str, emb: np.ndarray, data: Dataset) -> Head:
    features = "+features" in name
    if name.startswith("logreg"):
        c = float(name.split("C=")[1].split(",")[0].rstrip(")"))
        return logreg_head(emb, data.prompts, data.needs_strong, c, features)
    if name.startswith("ridge-gain"):
        alpha = float(name.split("alpha=")[1].split(",")[0].rstrip(")"))
        return ridge_gain_head(emb, data.prompts, data.strong - data.weak, alpha, features)
    hidden = int(name.split("(")[1].split(",")[0])
    alpha = float(name.split("alpha=")[1].rstrip(")"))
    return mlp_head(emb, data.prompts, data.needs_strong, hidden, alpha)
