"""`router eval`: the shipped head against the baselines, on data it never trained on.

Baselines, all fitted on the same training domains as the head: random (its expected curve), prompt
length, RouteLLM's similarity-weighted ranking (kNN over embeddings), and its matrix-factorisation idea
(with two models it reduces to a low-rank bilinear scorer: a logistic model on the embedding projected
to a few dimensions, trained on which model won).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from router.classify.data import Dataset
from router.classify.embedding_service import TextEmbedder
from router.classify.evaluation import Curve, bootstrap, curve, random_curve, summary
from router.classify.head import Head
from router.classify.train import EXCLUDED_DOMAINS, Scorer, cached_embeddings, knn_scorer


def mf_scorer(emb: np.ndarray, data: Dataset, rank: int = 64) -> Scorer:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    decided = data.strong != data.weak  # ties tell nothing about which model is better
    labels = (data.strong > data.weak)[decided].astype(int)
    if len(set(labels)) < 2:  # one model always won: no preference to learn
        return lambda e, texts: np.zeros(len(texts))
    projection = PCA(n_components=rank, random_state=0).fit(emb)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(projection.transform(emb[decided]), labels)
    return lambda e, texts: model.decision_function(projection.transform(e))


def baselines(train_emb: np.ndarray, train: Dataset) -> dict[str, Scorer | None]:
    return {
        "random": None,
        "prompt-length": lambda e, texts: np.array([len(t) for t in texts], dtype=float),
        "similarity-weighted (RouteLLM SW)": knn_scorer(train_emb, train.needs_strong),
        "matrix-factorisation (RouteLLM MF)": mf_scorer(train_emb, train),
    }


def evaluate(
    head: Head,
    mmlu: Dataset,
    others: list[Dataset],
    embedder: TextEmbedder,
    cache_dir: Path | None,
    reps: int = 1000,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Curve]]]:
    """Every router on every data set: APGR, CPT(50%), CPT(80%) and their 95% bootstrap intervals.

    The baselines are fitted on exactly the domains the head trained on (every clean domain of `mmlu`
    but the head's own `test_domains`), so no router sees more than another. A head fitted on all of
    `mmlu` has no held-out domains there: score it on other data (`--data`), never on what it saw.
    """
    test_domains = set(head.meta.get("test_domains") or [])
    keep = np.array([g not in test_domains and g not in EXCLUDED_DOMAINS for g in mmlu.groups])
    train = mmlu.subset(keep, "train")
    sets = list(others)
    if test_domains:
        held = np.array([g in test_domains for g in mmlu.groups])
        sets.insert(0, mmlu.subset(held, "mmlu (held-out domains)"))
    train_emb = cached_embeddings(embedder, train.prompts, cache_dir)
    routers: dict[str, Scorer | None] = {"hybrid-router (shipped head)": head.score, **baselines(train_emb, train)}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    curves: dict[str, dict[str, Curve]] = {}
    for data in sets:
        emb = cached_embeddings(embedder, data.prompts, cache_dir)
        results[data.name], curves[data.name] = {}, {}
        for name, scorer in routers.items():
            if scorer is None:
                c, intervals = random_curve(data.weak, data.strong), {}
            else:
                scores = np.asarray(scorer(emb, data.prompts), dtype=float)
                c = curve(scores, data.weak, data.strong)
                intervals = bootstrap(scores, data.weak, data.strong, data.groups, reps)
            curves[data.name][name] = c
            results[data.name][name] = {
                **summary(c),
                **{f"{k}_ci": [round(v, 4) for v in iv] for k, iv in intervals.items()},
            }
    return results, curves


def write_outputs(results: dict[str, Any], curves: dict[str, dict[str, Curve]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "eval.json"]
    written[0].write_text(json.dumps(results, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
    for ax, (dataset, by_router) in zip(axes[0], curves.items(), strict=True):
        for name, c in by_router.items():
            ax.plot(
                100 * c.shares,
                c.quality,
                label=f"{name} (APGR {c.apgr:.3f})",
                linestyle="--" if name == "random" else "-",
            )
        ax.set_title(dataset)
        ax.set_xlabel("calls to the strong model (%)")
        ax.set_ylabel("quality")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    plot = out / "eval.png"
    fig.savefig(plot, dpi=110)
    written.append(plot)
    return written


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per data set, the routers best APGR first, with 95% bootstrap intervals."""

    def interval(s: dict[str, Any], key: str, scale: float = 1.0, unit: str = "") -> str:
        if f"{key}_ci" not in s:
            return ""
        low, high = s[f"{key}_ci"]
        return f"[{scale * low:.{1 if unit else 3}f}, {scale * high:.{1 if unit else 3}f}]"

    lines = []
    for dataset, by_router in results.items():
        lines.append(f"{dataset}")
        ci = "(95% CI)"
        width = max(38, *(len(name) for name in by_router))
        lines.append(f"  {'router':<{width}} {'APGR':>6} {ci:<15} {'CPT(50%)':>8} {ci:<13} {'CPT(80%)':>8} {ci}")
        for name, s in sorted(by_router.items(), key=lambda item: -item[1]["apgr"]):
            lines.append(
                f"  {name:<{width}} {s['apgr']:>6.3f} {interval(s, 'apgr'):<15} {100 * s['cpt50']:>7.1f}% "
                f"{interval(s, 'cpt50', 100, '%'):<13} {100 * s['cpt80']:>7.1f}% {interval(s, 'cpt80', 100, '%')}"
            )
    return "\n".join(lines)
