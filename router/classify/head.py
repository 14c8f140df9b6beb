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
from router.config import GatewayConfig, LlamaCppModel
from router.errors import ConfigError

SHIPPED_HEAD = Path(__file__).with_name("head.npz")
STRONG_CHANCE_HEAD = Path(__file__).with_name("strong_chance.npz")
"""P(the strong model answers right) from the prompt (`router train --strong-chance`), fitted to GPT-4's
recorded outcomes on the shared MMLU domains and GSM8K: what the cascade's `expected_gain` weighs the local
answer against. It does not depend on the local model, so one ships for all."""
FITTED_HEADS_DIR = Path(__file__).with_name("heads")
"""Heads fitted to a packaged local model's own labels (`router label` + `router train --labels`), one
file per packaged model id: `<package>.npz`."""


def packaged_head_for(package: str | None) -> Path | None:
    """The head shipped for a packaged local model, if it has one: it was fitted to that model's mistakes."""
    return _shipped_for(package, ".npz")


def packaged_state_probe_for(package: str | None) -> Path | None:
    """The prompt-state probe shipped for a packaged local model, if it has one (`<package>.state.npz`)."""
    return _shipped_for(package, ".state.npz")


def packaged_letter_probe_for(package: str | None) -> Path | None:
    """The letter probe shipped for a packaged local model, if it has one (`<package>.letter-state.npz`): a
    state probe fitted on its states one token before the letter, as the cascade asks it aside (`router
    states --reading aside`)."""
    return _shipped_for(package, ".letter-state.npz")


def _shipped_for(package: str | None, suffix: str) -> Path | None:
    path = None if package is None else FITTED_HEADS_DIR / f"{package}{suffix}"
    return path if path is not None and path.exists() else None


@dataclass(frozen=True)
class Head:
    """A logistic regression, a ridge regression or a one-hidden-layer MLP over [embedding, standardised
    features]; a kernel regression of the strong model's gain over the training prompts' embeddings; or
    an expected gain: two logistic regressions, P(strong model right) and P(local model right), whose
    difference is what sending the prompt up is expected to gain."""

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
        if self.kind == "kernel-gain":
            return self._kernel_score(embeddings)
        if self.kind == "expected-gain":
            strong, local = self.chances(embeddings, texts)
            return (strong - local + 1.0) / 2.0
        x = self.inputs(embeddings, texts)
        for i, (weights, bias) in enumerate(self.layers):
            x = x @ weights + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return _sigmoid(x.reshape(-1))

    def chances(self, embeddings: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """An expected-gain head's two halves: P(the strong model answers right), P(the local model does)."""
        x = self.inputs(embeddings, texts)
        (ws, bs), (wl, bl) = self.layers
        return _sigmoid((x @ ws + bs).reshape(-1)), _sigmoid((x @ wl + bl).reshape(-1))

    def _kernel_score(self, embeddings: np.ndarray) -> np.ndarray:
        """Similarity-weighted mean of the strong model's gain over the `k` most similar training prompts
        (weights exp(temperature · cosine)), mapped from -1..1 to 0..1. The layer holds the training
        prompts' unit embeddings (float16) and their gains."""
        (vectors, gains), k, temperature = self.layers[0], int(self.meta["k"]), float(self.meta["temperature"])
        x = np.asarray(embeddings, dtype=np.float32)
        sims = x @ (vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)).T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.indices(sims.shape)[1]
        near = np.take_along_axis(sims, top, axis=1)
        weights = np.exp(temperature * (near - near.max(axis=1, keepdims=True)))
        gain = (weights * gains.astype(np.float32)[top]).sum(axis=1) / weights.sum(axis=1)
        if len(self.layers) == 1:
            return (gain + 1.0) / 2.0
        # With a second layer, an ensemble: the kernel's gain and a logistic regression's logit, each
        # standardised on the training prompts, averaged, and squashed back to 0..1.
        (w, b), (mean, std) = self.layers[1], self.layers[2]
        logit = (x @ w + b).reshape(-1)
        z = ((gain - mean[0]) / std[0] + (logit - mean[1]) / std[1]) / 2.0
        return _sigmoid(1.7 * z)

    def save(self, path: Path) -> None:
        layers = self.layers
        if self.kind == "kernel-gain":
            layers = ((layers[0][0].astype(np.float16), layers[0][1]), *layers[1:])
        arrays = {f"w{i}": w for i, (w, _) in enumerate(layers)} | {f"b{i}": b for i, (_, b) in enumerate(layers)}
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
            if meta["kind"] == "kernel-gain":  # stored as float16 (half the file); scored in float32, converted once
                layers = ((layers[0][0].astype(np.float32), layers[0][1]), *layers[1:])
            return cls(meta["kind"], layers, data["feature_mean"], data["feature_std"], meta["use_features"], meta)


def strong_chances(head: Head, strong: Head | None, embeddings: np.ndarray, texts: list[str]) -> np.ndarray | None:
    """P(the strong model answers right) per text: an expected-gain head's own strong half, else the
    strong-chance head's; None when there is neither."""
    if head.kind == "expected-gain":
        return head.chances(embeddings, texts)[0]
    return None if strong is None else strong.score(embeddings, texts)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def head_for_local(config: GatewayConfig) -> Path:
    """The escalation head for the local model that answers: configured for it, else the one shipped for
    its packaged GGUF (fitted to that model's own mistakes), else the general head."""
    local = config.models[config.routes.local]
    package = local.package if isinstance(local, LlamaCppModel) and local.model_path is None else None
    return config.classifier.head_for(config.routes.local) or packaged_head_for(package) or SHIPPED_HEAD


def strong_head(config: GatewayConfig) -> Path:
    """P(strong model right) for the cascade's `expected_gain`: the configured head, else the shipped one."""
    configured = config.classifier.strong_chance
    if configured is not None and not configured.is_file():
        raise ConfigError(
            f"classifier.strong_chance: {configured} is not a file (make one with `router train --strong-chance`)"
        )
    return configured or STRONG_CHANCE_HEAD
