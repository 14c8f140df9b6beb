"""The routing policy's YAML schema, as pydantic models.

A policy is a list of rules and a default. Each rule has a `when` (conditions, all of which must hold)
and an action (`route`). Unknown keys are errors, so a typo is reported with its line instead of being
silently ignored. Matching itself lives in `matchers.py`; this file only says what may be written.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
BUILTIN_TARGETS = ("local", "cloud", "auto")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Range(_Strict):
    """An inclusive range; either end may be left open."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self

    def contains(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Condition(_Strict):
    """Conditions of one rule. Every condition given must hold (AND); within a list, any entry may match (OR)."""

    model: list[str] | None = Field(
        None, description="Requested model names or aliases; shell-style wildcards allowed (`gpt-4*`)."
    )
    keywords: list[str] | None = Field(None, description="Whole words or phrases, case-insensitive.")
    regex: list[str] | None = Field(
        None, description="Python regular expressions (search, case-sensitive unless (?i))."
    )
    scope: Literal["last_user", "all"] = Field(
        "last_user",
        description="Text that keywords and regex look at: the last user message, or all messages.",
    )
    prompt_tokens: Range | None = Field(None, description="Prompt size in tokens.")
    messages: Range | None = Field(None, description="Number of messages in the conversation.")
    headers: dict[str, list[str]] | None = Field(
        None,
        description="Header name → accepted values (case-insensitive); `*` accepts any value that is present.",
    )
    all: list[Condition] | None = Field(None, description="Every nested condition holds.")
    any: list[Condition] | None = Field(None, description="At least one nested condition holds.")
    not_: Condition | None = Field(None, alias="not", description="The nested condition does not hold.")

    _keyword_re: re.Pattern[str] | None = PrivateAttr(None)
    _regexes: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    _lists = field_validator("model", "keywords", "regex", mode="before")(_as_list)

    @field_validator("headers", mode="before")
    @classmethod
    def _header_values_are_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower(): _as_list(v) for k, v in value.items()}
        return value

    @field_validator("regex")
    @classmethod
    def _regexes_compile(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty_and_compiled(self) -> Condition:
        given = self.model_fields_set - {"scope"}
        if not given:
            raise ValueError(
                "a condition needs at least one of: model, keywords, regex, prompt_tokens, messages, "
                "headers, all, any, not"
            )
        if self.keywords:
            words = "|".join(re.escape(k.strip()) for k in self.keywords if k.strip())
            # \b on both sides: "api" must not match inside "rapid".
            self._keyword_re = re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)
        self._regexes = [re.compile(p) for p in self.regex or []]
        return self

    @property
    def keyword_pattern(self) -> re.Pattern[str] | None:
        return self._keyword_re

    @property
    def compiled_regexes(self) -> list[re.Pattern[str]]:
        return self._regexes


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

    metric: Literal["mean_logprob", "min_logprob", "mean_entropy"] = Field(
        "mean_logprob",
        description="`mean_logprob` / `min_logprob`: log-probability of the sampled tokens (escalate below the "
        "threshold); `mean_entropy`: of the next-token distributions, in nats (escalate above it).",
    )
    threshold: float = Field(description="Where the metric says `not sure`; `router route --explain` shows values.")

    @model_validator(mode="after")
    def _sensible_threshold(self) -> CascadeAction:
        if self.metric != "mean_entropy" and self.threshold > 0:
            raise ValueError(f"a log-probability is at most 0; threshold {self.threshold} would always escalate")
        if self.metric == "mean_entropy" and self.threshold < 0:
            raise ValueError("an entropy is at least 0; a negative threshold would always escalate")
        return self


class _RouteAction(_Strict):
    """Where matching requests go: `route`, and for `route: auto` the classifier's `threshold`."""

    route: str | list[str] = Field(
        description="`local`, `cloud`, `auto`, or a configured model's name; or an ordered list, tried in turn."
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="With `route: auto`: escalate to the cloud when the classifier's score is at least this.",
    )
    cache: CacheAction | None = Field(
        None, description="Caching for these requests (`false` turns it off); unset keeps the defaults."
    )
    cascade: CascadeAction | None = Field(
        None,
        description="When the route comes out `local`: answer locally first and escalate to the cloud if the "
        "local model's confidence is low (combines with `route: auto`).",
    )

    @model_validator(mode="after")
    def _threshold_goes_with_auto(self) -> _RouteAction:
        _check_auto(self.route, self.threshold)
        if self.cascade is not None and self.route not in ("local", "auto"):
            raise ValueError("`cascade` needs `route: local` or `route: auto`: it escalates local answers")
        return self

    @field_validator("route")
    @classmethod
    def _route_is_known(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        return _check_target(value, info)


class Rule(_RouteAction):
    name: str = Field(pattern=RULE_NAME, description="Shown in x-router-reason, logs and the dashboard.")
    description: str | None = None
    when: Condition
    pin: bool = Field(
        False,
        description="Never fall back to another route. A pinned local rule keeps requests off the cloud "
        "even when the local model fails (the client gets an error instead).",
    )
    max_tokens: int | None = Field(None, ge=1, description="Cap on completion tokens for matching requests.")

    @model_validator(mode="after")
    def _pinned_rules_never_escalate(self) -> Rule:
        if self.pin and self.cascade is not None:
            raise ValueError("a pinned rule never leaves its route, so it cannot `cascade` to the cloud")
        return self


class DefaultAction(_RouteAction):
    route: str | list[str] = Field("local", description="Where requests go when no rule matches.")


def _check_auto(route: str | list[str], threshold: float | None) -> None:
    auto = route == "auto"
    if isinstance(route, list) and "auto" in route:
        raise ValueError("`auto` cannot be part of a route list; use it alone with a threshold")
    if auto and threshold is None:
        raise ValueError("`route: auto` needs a `threshold` (0..1); `router calibrate` finds one for a target share")
    if not auto and threshold is not None:
        raise ValueError("`threshold` only applies to `route: auto`")


def _check_target(value: str | list[str], info: ValidationInfo) -> str | list[str]:
    known = (info.context or {}).get("models")
    targets = [value] if isinstance(value, str) else value
    if not targets:
        raise ValueError("a route list needs at least one entry")
    for target in targets:
        if target not in BUILTIN_TARGETS and known is not None and target not in known:
            choices = ", ".join([*BUILTIN_TARGETS, *sorted(known)])
            raise ValueError(f"unknown route `{target}`; expected one of: {choices}")
    return value


class Policy(_Strict):
    version: Literal[1] = 1
    description: str | None = None
    default: DefaultAction = Field(default_factory=DefaultAction)
    rules: list[Rule] = Field(default_factory=list)

    @property
    def uses_classifier(self) -> bool:
        """True when any route is `auto`: the gateway then loads the classifier."""
        return self.default.route == "auto" or any(rule.route == "auto" for rule in self.rules)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name `{rule.name}` is used twice; names must be unique")
            seen.add(rule.name)
        return rules
