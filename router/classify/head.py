"""The escalation head: P(the request needs the strong model) from an embedding plus cheap features.

Trained offline (`router train`) with scikit-learn, shipped as a small `.npz` of plain arrays and
scored here with numpy alone: serving needs no scikit-learn and no training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.classify.features import feature_matrix

SHIPPED_HEAD = Path(__file__).with_name("head.npz")


@dataclass(frozen=True)
class Head:
    """A logistic regression or a one-hidden-layer MLP over [embedding, standardised features]."""

    kind: str
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    """(weights, bias) per layer; hidden layers use ReLU, the last a sigmoid."""
    feature_mean: np.ndarray
    feature_std: np.ndarray
    use_features: bool
    meta: dict

    def inputs(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        if not self.use_features:
            return embeddings
        features = (feature_matrix(texts) - self.feature_mean) / self.feature_std
        return np.hstack([embeddings, features.astype(np.float32)])

    def score(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        """One score in 0..1 per text: the higher, the more the strong model is needed."""
        x = self.inputs(embeddings, texts)
        for i, (weights, bias) in enumerate(self.layers):
            x = x @ weights + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return 1.0 / (1.0 + np.exp(-x.reshape(-1)))

    def save(self, path: Path) -> None:
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.layers)} | {
            f"b{i}": b for i, (_, b) in enumerate(self.layers)
        }
        np.savez_compressed(
            path,
            feature_mean=self.feature_mean,
            feature_std=self.feature_std,
            meta=np.array(json.dumps({**self.meta, "kind": self.kind, "use_features": self.use_features})),
            **arrays,
        )

    @classmethod
    def load(cls, path: Path = SHIPPED_HEAD) -> Head:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            n = sum(1 for key in data.files if key.startswith("w"))
            layers = tuple((data[f"w{i}"], data[f"b{i}"]) for i in range(n))
            return cls(meta["kind"], layers, data["feature_mean"], data["feature_std"], meta["use_features"], meta)
