"""Labels as a routing data set: the local model is the weak side, the data's strong model the strong, and
the cascade's confidence of every answer beside them (what `router train|eval|calibrate --labels` read)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from router.errors import ConfigError


@dataclass(frozen=True)
class LabelledSet:
    """Labels as a routing data set: the local model is the weak side, the data's strong model the strong."""

    data: Any
    """A `Dataset` (weak = the local model's outcome, strong = the recorded strong model's)."""
    confidence: dict[str, Any]
    """Per metric, one value per prompt (higher = surer; entropy negated), NaN where none was measured."""
    local_model: str
    early: dict[str, Any] = field(default_factory=dict)
    """The same metrics over the answer's first `early_tokens` tokens only (what an early-deciding cascade
    judges); NaN where the labels carry no first-token statistics."""
    early_tokens: int = 0
    ids: list[str] = field(default_factory=list)
    """Each prompt's label id, in the data's order."""

    def without_groups(self, groups: Iterable[str]) -> LabelledSet:
        """The same labels without those of `groups` (domains whose strong-model outcomes are unusable)."""
        import numpy as np

        dropped = set(groups)
        keep = np.array([g not in dropped for g in self.data.groups])
        if keep.all():
            return self
        return LabelledSet(
            self.data.subset(keep),
            {k: v[keep] for k, v in self.confidence.items()},
            self.local_model,
            {k: v[keep] for k, v in self.early.items()},
            self.early_tokens,
            [i for i, kept in zip(self.ids, keep, strict=False) if kept],
        )


def early_metrics(confidence: dict[str, Any] | None, tokens: int) -> dict[str, float]:
    """The cascade's metrics over an answer's first `tokens` tokens, from a label's recorded `first`
    statistics (or its whole-answer ones, when the answer was no longer than that); higher = surer. At 0
    tokens (a cascade that decides once the prompt is read) the first token's, as the meter judges it."""
    confidence = confidence or {}
    tokens = max(1, tokens)
    first = confidence.get("first")
    if first:
        logprobs = [lp for lp, _ in first[:tokens]]
        entropies = [h for _, h in first[:tokens]]
        mean = sum(logprobs) / len(logprobs)
        # Labels are made at temperature 0, where the sampled token is the likeliest: top = sampled.
        return {"mean_logprob": mean, "mean_top_logprob": mean, "min_logprob": min(logprobs),
                "mean_entropy": -sum(entropies) / len(entropies)}  # fmt: skip
    if confidence.get("tokens") is not None and confidence["tokens"] <= tokens:
        whole = {**confidence, "mean_top_logprob": confidence.get("mean_top_logprob", confidence["mean_logprob"])}
        return {k: (-1 if k == "mean_entropy" else 1) * float(whole[k]) for k in CASCADE_METRICS}
    return dict.fromkeys(CASCADE_METRICS, float("nan"))


EARLY_METRICS = ("mean_logprob", "min_logprob", "mean_entropy")
CASCADE_METRICS = (*EARLY_METRICS, "mean_top_logprob")
"""What a cascade may judge; at temperature 0 (labels) `mean_top_logprob` is `mean_logprob`."""


def labelled_set(records: list[dict[str, Any]], name: str = "labels", early_tokens: int = 16) -> LabelledSet:
    """Records with a recorded strong outcome, as a `Dataset` plus the cascade's confidence per prompt."""
    import numpy as np

    from router.classify.data import Dataset

    usable = [r for r in records if r.get("strong_right") is not None]
    if any(not r.get("prompt") for r in usable):
        raise ConfigError("some labels carry no prompt: pass --tasks with the data they were labelled on")
    if not usable:
        raise ConfigError("no label has a recorded strong-model outcome (`strong_right`): nothing to route between")
    models = sorted({r["local_model"] for r in usable})
    if len(models) > 1:
        raise ConfigError(f"labels of several local models mixed ({', '.join(models)}): pass one model's files")

    def metric(record: dict[str, Any], key: str) -> float:
        value = (record.get("confidence") or {}).get(key)
        if value is None:
            return float("nan")
        return -float(value) if key == "mean_entropy" else float(value)

    dataset = Dataset(
        name,
        [r["prompt"] for r in usable],
        np.array([float(r["local_right"]) for r in usable]),
        np.array([float(r["strong_right"]) for r in usable]),
        [str(r["group"]) for r in usable],
    )
    confidence = {k: np.array([metric(r, k) for r in usable]) for k in EARLY_METRICS}
    early_rows = [early_metrics(r.get("confidence"), early_tokens) for r in usable]
    early = {k: np.array([row[k] for row in early_rows]) for k in CASCADE_METRICS}
    return LabelledSet(dataset, confidence, models[0], early, early_tokens, [str(r["id"]) for r in usable])
