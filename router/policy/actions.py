"""What a matching rule may do besides routing: its cache settings, a confidence cascade, or a refusal
(the `cache:`, `cascade:` and `deny:` of a rule or default; `schema.py` puts them in rules)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from router.cascade_rule import GAIN_METRICS
from router.policy.conditions import _Strict


class CacheAction(_Strict):
    """Caching for matching requests; what is left out comes from the gateway's `cache:` settings."""

    enabled: bool = Field(True, description="False: never answer these from the cache, never store their answers.")
    ttl_s: int | None = Field(None, ge=1, description="How long their answers stay cached.")
    semantic: bool | None = Field(None, description="Also answer near-repeats by embedding similarity.")
    semantic_threshold: float | None = Field(
        None, gt=0, le=1, description="Cosine similarity a near-repeat needs (higher is stricter)."
    )
    sampled: bool = Field(
        False,
        description="Cache sampled requests too (temperature above 0, or none given: OpenAI's default is 1). "
        "Off by default: such requests ask for varied answers.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bool_is_shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class CascadeAction(_Strict):
    """Let the local model answer first; send the request on to the cloud when it was not sure."""

    metric: Literal[
        "mean_logprob", "mean_top_logprob", "min_logprob", "mean_entropy", "expected_gain", "prompt_gain", "letter_gain"
    ] = Field(
        "mean_logprob",
        description="`mean_logprob` / `min_logprob`: log-probability of the sampled tokens (escalate below the "
        "threshold); `mean_top_logprob`: of the likeliest token at each step, whichever was sampled (the same "
        "as `mean_logprob` at temperature 0, and not lowered by sampling); `mean_entropy`: of the next-token "
        "distributions, in nats (escalate above it); `expected_gain`: the classifier's P(strong model right) "
        "minus the local answer's own probability (exp of `mean_top_logprob`), what sending it up is expected "
        "to gain (escalate above it; needs a head with a strong half, as shipped for the default model); "
        "`prompt_gain`: P(strong model right) minus P(local model right) as the local model's own state at the "
        "end of the prompt gives them (its state probe, shipped for the default model), so it can decide before "
        "the first token (`decide_after_tokens: 0`); with a local model that has no probe, `expected_gain` "
        "stands in; `letter_gain`: for a multiple-choice question (options A-D), the local model is first asked "
        "aside for the letter only (one token), and P(strong model right) from its letter probe minus that "
        "letter's probability decides before the served answer starts; other requests are judged as by "
        "`expected_gain`.",
    )
    threshold: float = Field(description="Where the metric says `not sure`; `router route --explain` shows values.")
    decide_after_tokens: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Decide on the answer's first this many tokens: a kept answer then streams live, and an "
        "escalated one stops the local model there; 0: once the local model has read the prompt, before it "
        "writes (for `prompt_gain`; other metrics then judge the first token's distribution). Unset: judge the "
        "whole answer (a stream is held back until the local model has finished).",
    )

    @model_validator(mode="after")
    def _sensible_threshold(self) -> CascadeAction:
        if self.metric in GAIN_METRICS:
            if not -1 <= self.threshold <= 1:
                raise ValueError(f"an expected gain lies in -1..1; threshold {self.threshold} is outside it")
            return self
        if self.metric != "mean_entropy" and self.threshold > 0:
            raise ValueError(f"a log-probability is at most 0; threshold {self.threshold} would always escalate")
        if self.metric == "mean_entropy" and self.threshold < 0:
            raise ValueError("an entropy is at least 0; a negative threshold would always escalate")
        return self


class DenyAction(_Strict):
    """Refuse matching requests with an OpenAI-style error; no model is called."""

    message: str = Field(min_length=1, description="What the client is told.")
    status: Literal[400, 403, 429] = Field(403, description="HTTP status: 403 (forbidden), 429 (over a limit), 400.")

    @model_validator(mode="before")
    @classmethod
    def _string_is_the_message(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("`deny` needs a message; YAML reads an unquoted yes/no/on/off as a boolean: quote it")
        return {"message": value} if isinstance(value, str) else value
