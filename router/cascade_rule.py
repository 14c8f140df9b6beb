"""The cascade's rule and what it judges: how sure the local model was of an answer, and when that sends
the request on to the cloud."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """Let the local model answer first; escalate to the cloud when its confidence is low."""

    metric: str
    """`mean_logprob`, `mean_top_logprob` or `min_logprob` (escalate below the threshold), `mean_entropy`
    (escalate above it), `expected_gain` (escalate above it): the head's P(strong model right) minus the
    local answer's own probability (exp of its `mean_top_logprob`), or `prompt_gain` (escalate above it):
    P(strong model right) minus P(local model right) as the local model's reading of the prompt gives
    them, before it writes a token (`expected_gain` stands in where the local model has no state probe), or
    `letter_gain` (escalate above it): for a multiple-choice question, the local model asked aside for the
    letter only (`router/letter_probe.py`): P(strong model right) from its letter probe minus the letter's
    own probability (`expected_gain` stands in for other requests)."""
    threshold: float
    decide_after_tokens: int | None = None
    """Judge the answer's first this many tokens (stop the local model there on escalation, stream the
    rest live on keep); None: judge the whole answer, holding a stream back until it is complete."""
    strong_chance: float | None = None
    """For `expected_gain`: this request's P(strong model right), from the strong-chance head (or an
    expected-gain head's strong half); None when the classifier gave none, and `STRONG_CHANCE_UNKNOWN`
    stands in."""

    def measure(self, confidence: Confidence) -> float:
        """The metric's value for this answer (what the threshold is compared with)."""
        if self.metric == "prompt_gain" and confidence.prompt is not None:
            return confidence.prompt.gain
        if self.metric == "letter_gain" and confidence.prompt is not None:
            return confidence.prompt.strong - math.exp(confidence.value("mean_top_logprob"))
        if self.metric in GAIN_METRICS:
            chance = STRONG_CHANCE_UNKNOWN if self.strong_chance is None else self.strong_chance
            return chance - math.exp(confidence.value("mean_top_logprob"))
        return confidence.value(self.metric)

    def escalate(self, confidence: Confidence) -> bool:
        value = self.measure(confidence)
        return value < self.threshold if self.metric in LOW_IS_UNSURE else value > self.threshold


LOW_IS_UNSURE = ("mean_logprob", "mean_top_logprob", "min_logprob")
"""Cascade metrics that escalate below their threshold; the others (`mean_entropy`, the gains) above."""
GAIN_METRICS = ("expected_gain", "prompt_gain", "letter_gain")
"""Cascade metrics that weigh P(strong model right) against the local model's chance: the classifier's
strong-chance head is loaded for them (`prompt_gain` falls back to `expected_gain` without a state probe,
`letter_gain` to the head's P(strong right) without a letter probe, and to `expected_gain` on a request
that is not a multiple-choice question)."""
STRONG_CHANCE_UNKNOWN = 0.8
"""P(strong model right) where the head gives none: GPT-4's rate on the shared MMLU domains (0.81)."""


@dataclass(frozen=True, slots=True)
class PromptChances:
    """The local model's reading of one prompt, before it writes a token (`classify/prompt_state.py`)."""

    strong: float
    """P(the strong model answers it right)."""
    local: float
    """P(the local model answers it right)."""

    @property
    def gain(self) -> float:
        """The expected gain in rightness of asking the strong model instead."""
        return self.strong - self.local


@dataclass(frozen=True, slots=True)
class Confidence:
    """How sure the local model was of an answer, measured as it generated (`backends/confidence.py`)."""

    mean_logprob: float
    """Mean natural-log probability of the sampled tokens (0 = certain; lower = less sure)."""
    min_logprob: float
    """The least likely sampled token's log-probability."""
    mean_entropy: float
    """Mean entropy of the next-token distribution, in nats (0 = certain; higher = less sure)."""
    tokens: int
    mean_top_logprob: float | None = None
    """Mean log-probability of the likeliest token at each step: what `mean_logprob` is at temperature 0,
    and not moved by which token a sampler picked (a long answer sampled at 0.7 lowers `mean_logprob`)."""
    first_tokens: tuple[tuple[float, float], ...] = ()
    """(log-probability, entropy) of the answer's first tokens (up to `backends.confidence.FIRST_TOKENS_KEPT`): what an
    early cascade rule is fitted and reported on (`router label` records them)."""
    last_tokens: tuple[tuple[float, float], ...] = ()
    """The same for a whole answer's last tokens (up to `backends.confidence.LAST_TOKENS_KEPT`), where a
    reasoned answer states its conclusion; empty for a judgement on the first tokens only."""
    prompt: PromptChances | None = None
    """What the local model's state probe read in the prompt (None: its model has no probe)."""

    def value(self, metric: str) -> float:
        value = getattr(self, metric)
        return float(self.mean_logprob if value is None else value)  # a meter that kept no top log-probability
