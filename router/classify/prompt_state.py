"""What the local model's own reading of a prompt says before it writes a word: P(it answers right) and
P(the strong model answers right), from a linear probe of its last hidden state at the end of the prompt.

`router states` collects those states for labelled prompts (`backends/prompt_states.py`), `router train
--prompt-state` fits the probe, and a local model's `state_probe: FILE` (or a shipped
`heads/<package>.state.npz`) puts it in the cascade's `prompt_gain`.

What it measured on the default model's MMLU labels, whole domains held out (bench/RESULTS.md): the state
knows GPT-4's chance better than the prompt's embedding does (AUROC 0.73 against 0.63), but the local
model's own chance worse than the answer's first token does (0.62 against 0.73); as a router before any
token it is only a little ahead of the embedding heads. So none ships for the default model.

How it runs in the gateway: the gateway never sees the hidden state h, only the logits l = W·h that the
first token is sampled from (W: the model's output matrix, fixed). A linear probe a·h + b is the same
number as v·l + b with v = W (WᵀW)⁻¹ a, so the probe ships as one vector over the vocabulary per chance,
and applying it is a dot product on the first step's logits, which the confidence meter holds anyway.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.cascade_rule import PromptChances
from router.errors import ConfigError

STATE_PROBE_C = {"strong": 0.003, "local": 0.0003}
"""Inverse regularisation of the two logistic regressions on the standardised state (1,536 wide for the
default model): the best held-out AUROC among 0.0003-0.03 on the first ~500 of the default model's MMLU
labels, domain-grouped folds."""


@dataclass(frozen=True)
class StateProbe:
    """The two probes, in logit space: each chance is sigmoid(weights · first-step logits + bias)."""

    strong_weights: np.ndarray
    local_weights: np.ndarray
    strong_bias: float
    local_bias: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vocab(self) -> int:
        return int(self.strong_weights.shape[0])

    def chances(self, logits: np.ndarray) -> PromptChances:
        """The chances from the logits the model's first answer token is sampled from."""
        values = np.asarray(logits, dtype=np.float32)
        return PromptChances(
            _sigmoid(float(self.strong_weights @ values) + self.strong_bias),
            _sigmoid(float(self.local_weights @ values) + self.local_bias),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            strong_weights=self.strong_weights.astype(np.float32),
            local_weights=self.local_weights.astype(np.float32),
            biases=np.array([self.strong_bias, self.local_bias]),
            meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: Path) -> StateProbe:
        try:
            with np.load(path, allow_pickle=False) as data:
                biases = data["biases"]
                return cls(
                    data["strong_weights"], data["local_weights"], float(biases[0]), float(biases[1]),
                    json.loads(str(data["meta"])),
                )  # fmt: skip
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: not a prompt-state probe ({exc})") from exc


def load_probe(
    field: str, configured: Path | str | None, shipped: Path | None, reading: str
) -> tuple[Path | None, StateProbe | None]:
    """(file, probe) a local model's config names (`none`: no probe), else the one shipped for its package.
    `reading`: how the gateway renders the prompts this probe reads (`router states`' reading); a probe
    fitted on states read another way would read numbers it never saw, so it is refused."""
    if configured == "none":
        return None, None
    path = configured if isinstance(configured, Path) else shipped
    if path is None:
        return None, None
    if not path.is_file():
        raise ConfigError(f"{field}: {path} is not a file (make one with `router train --prompt-state`)")
    probe = StateProbe.load(path)
    fitted = probe.meta.get("reading")
    if fitted is not None and fitted != reading:
        raise ConfigError(
            f"{field}: {path} was fitted on states read as `{fitted}`; the gateway reads this probe's prompts "
            f"as `{reading}` (collect them with `router states --reading {reading}`)"
        )
    return path, probe


def probe_summary(path: Path | None, probe: StateProbe | None) -> dict[str, Any] | None:
    """What /readyz says of a probe: its file and what it was fitted on."""
    if path is None or probe is None:
        return None
    fitted_on = ("labels", "domains", "heldout_auroc", "reading")
    return {"file": path.name, **{key: probe.meta[key] for key in fitted_on if key in probe.meta}}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _standardised(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = states.mean(0), states.std(0) + 1e-6
    return (states - mean) / scale, mean, scale


def probe_out_of_fold(states: np.ndarray, target: np.ndarray, fold: np.ndarray, c: float) -> np.ndarray:
    """P(target) per row from a probe fitted without the row's fold (standardised on the other folds)."""
    from sklearn.linear_model import LogisticRegression

    out = np.full(len(target), float(target.mean()))
    for k in np.unique(fold):
        held = fold == k
        if len(set(target[~held].tolist())) < 2:
            continue
        z, mean, scale = _standardised(states[~held])
        fitted = LogisticRegression(C=c, max_iter=3000).fit(z, target[~held])
        out[held] = fitted.predict_proba((states[held] - mean) / scale)[:, 1]
    return out


def _fitted_in_state_space(states: np.ndarray, target: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(a, b) of P(target) = sigmoid(a·h + b) on raw states h (the standardisation folded in)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(target.tolist())) < 2:
        raise ConfigError("the outcomes are all alike: there is nothing for the probe to learn")
    z, mean, scale = _standardised(states)
    fitted = LogisticRegression(C=c, max_iter=3000).fit(z, target)
    weights = fitted.coef_[0] / scale
    return weights, float(fitted.intercept_[0] - weights @ mean)


def to_logit_space(weights: np.ndarray, output: np.ndarray) -> np.ndarray:
    """V with V[:, j]·(W h) = weights[:, j]·h for every h: V = W (WᵀW)⁻¹ weights (W: n_vocab x width, of
    full column rank; `weights`: width x probes). The Gram matrix is the costly part: all probes share it."""
    wide = output.astype(np.float64)
    return (wide @ np.linalg.solve(wide.T @ wide, weights.astype(np.float64))).astype(np.float32)


def fit_state_probe(
    states: np.ndarray, strong_right: np.ndarray, local_right: np.ndarray, output: np.ndarray, meta: dict[str, Any]
) -> StateProbe:
    """Both probes on all the states given, carried into the logit space of the model whose output matrix
    `output` is."""
    if output.shape[1] != states.shape[1]:
        raise ConfigError(f"the states are {states.shape[1]} wide but the model's output matrix {output.shape[1]}")
    strong, strong_bias = _fitted_in_state_space(states, strong_right.astype(int), STATE_PROBE_C["strong"])
    local, local_bias = _fitted_in_state_space(states, local_right.astype(int), STATE_PROBE_C["local"])
    both = to_logit_space(np.stack([strong, local], axis=1), output)
    return StateProbe(both[:, 0].copy(), both[:, 1].copy(), strong_bias, local_bias, meta)


def output_matrix(gguf_path: Path, rows: int | None = None) -> np.ndarray:
    """The model's output matrix W (n_vocab x width; its first `rows` rows only, if given), dequantised from
    its GGUF (the token embedding when the model ties them). Dequantising needs the `gguf` package (a
    training dependency, not the gateway's)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError as exc:  # pragma: no cover - the dev install has it
        raise ConfigError("fitting a prompt-state probe needs the `gguf` package (pip install gguf)") from exc
    found = _tensor_locations(gguf_path)
    name = "output.weight" if "output.weight" in found else "token_embd.weight"
    if name not in found:
        raise ConfigError(f"{gguf_path}: no output matrix (neither output.weight nor token_embd.weight)")
    shape, kind, start = found[name]
    width, n_rows = shape[0], shape[1]
    qtype = GGMLQuantizationType(kind)
    block, size = GGML_QUANT_SIZES[qtype]
    row_bytes = width // block * size
    taken = n_rows if rows is None else min(rows, n_rows)
    raw = np.memmap(gguf_path, dtype=np.uint8, mode="r", offset=start, shape=(taken, row_bytes))
    return np.asarray(dequantize(np.asarray(raw), qtype), dtype=np.float32).reshape(taken, width)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
"""GGUF metadata value types of fixed size, as `struct` formats (8: string, 9: array)."""


def _tensor_locations(path: Path) -> dict[str, tuple[list[int], int, int]]:
    """Each tensor's (dimensions, ggml type, absolute file offset of its data), read from the GGUF header.
    The metadata is skipped, not parsed: `gguf.GGUFReader` decodes every vocabulary string one by one
    (minutes for 262,144 tokens); this reads the header in well under a second."""
    import struct

    with path.open("rb") as f:
        data = f.read(64 * 1024 * 1024)  # the header (vocabulary included) fits well within this
    if data[:4] != b"GGUF":
        raise ConfigError(f"{path}: not a GGUF file")
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos, alignment = 24, 32

    def string(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", data, at)
        return data[at + 8 : at + 8 + length].decode("utf-8", "replace"), at + 8 + length

    def skip(kind: int, at: int) -> int:
        if kind == 8:
            return string(at)[1]
        if kind == 9:
            inner, count = struct.unpack_from("<IQ", data, at)
            at += 12
            if inner in _SCALARS:
                return at + count * struct.calcsize("<" + _SCALARS[inner])
            for _ in range(count):
                at = skip(inner, at)
            return at
        return at + struct.calcsize("<" + _SCALARS[kind])

    for _ in range(n_kv):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", data, pos)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, pos + 4)
        pos = skip(kind, pos + 4)
    tensors = {}
    for _ in range(n_tensors):
        name, pos = string(pos)
        (dims,) = struct.unpack_from("<I", data, pos)
        shape = list(struct.unpack_from(f"<{dims}Q", data, pos + 4))
        kind, offset = struct.unpack_from("<IQ", data, pos + 4 + 8 * dims)
        pos += 4 + 8 * dims + 12
        tensors[name] = (shape, kind, offset)
    start = -(-pos // alignment) * alignment
    return {name: (shape, kind, start + offset) for name, (shape, kind, offset) in tensors.items()}


def train_state_probe(
    records: list[dict[str, Any]], states: dict[str, np.ndarray], output: np.ndarray, folds: int = 8
) -> tuple[StateProbe, dict[str, float]]:
    """The probe fitted to every label that has a state (domains whose strong outcomes are unusable left
    out), and its AUROC for each chance on whole domains held out (`folds` domain-grouped folds)."""
    from sklearn.metrics import roc_auc_score

    from router.classify.train import EXCLUDED_DOMAINS, selection_folds

    kept = [r for r in records if r["id"] in states and r["group"] not in EXCLUDED_DOMAINS]
    if len(kept) < 2 * folds:
        raise ConfigError(f"only {len(kept)} labels have a state: collect more with `router states`")
    x = np.stack([states[r["id"]] for r in kept])
    strong = np.array([bool(r["strong_right"]) for r in kept])
    local = np.array([bool(r["local_right"]) for r in kept])
    groups = [str(r["group"]) for r in kept]
    fold = selection_folds(groups, folds)
    aurocs = {
        name: round(float(roc_auc_score(y, probe_out_of_fold(x, y.astype(int), fold, STATE_PROBE_C[name]))), 4)
        for name, y in (("strong", strong), ("local", local))
    }
    meta = {
        "target": "P(strong model right), P(local model right) from the local model's state at the end of the prompt",
        "local_model": str(kept[0].get("local_model", "")),
        "labels": len(kept),
        "domains": len(set(groups)),
        "heldout_auroc": aurocs,
        "c": STATE_PROBE_C,
    }
    return fit_state_probe(x, strong, local, output, meta), aurocs
