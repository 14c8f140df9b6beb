"""The routing policy's YAML schema, as pydantic models.

A policy is a list of rules and a default. Each rule has a `when` (conditions, all of which must hold)
and an action (`route`, or `deny`). Unknown keys are errors, so a typo is reported with its line instead
of being silently ignored. Matching lives in `matchers.py`, loading (includes, per-tenant overrides) in
`engine.py`; this file only says what may be written. `router policy schema` prints it as JSON Schema
(`policies/policy.schema.json`, for editors).
"""

from __future__ import annotations

import re
from datetime import time as clock_time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.pii import PII_KINDS

RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
BUILTIN_TARGETS = ("local", "cloud", "auto")
PiiKind = Literal["email", "phone", "credit_card", "iban", "national_id", "ip_address", "secret"]
BudgetState = Literal["ok", "near", "over"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        return f"{'' if self.min is None else self.min}..{'' if self.max is None else self.max}"


class ScoreRange(Range):
    """An inclusive range of a score between 0 and 1."""

    min: float | None = Field(None, ge=0, le=1)  # type: ignore[assignment]
    max: float | None = Field(None, ge=0, le=1)  # type: ignore[assignment]


def _clock(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 09:30 as the number 570 (sexagesimal); take it back to a time.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


class TimeWindow(_Strict):
    """Local time of day and days of the week when a rule applies; `after` later than `before` spans midnight."""

    after: clock_time | None = Field(None, description="From this time of day (HH:MM), inclusive.")
    before: clock_time | None = Field(None, description="Until this time of day (HH:MM), exclusive.")
    days: list[Weekday] | None = Field(None, description="Days of the week (`mon`..`sun`); unset: every day.")
    tz: str = Field("UTC", description="IANA time zone the times are in, e.g. `Europe/Berlin`.")

    _zone: ZoneInfo = PrivateAttr()

    _times = field_validator("after", "before", mode="before")(_clock)

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone `{value}`; expected an IANA name such as `Europe/Berlin`") from exc
        return value

    @model_validator(mode="after")
    def _something_given(self) -> TimeWindow:
        if self.after is None and self.before is None and not self.days:
            raise ValueError("give `after`, `before`, `days` or a combination")
        if self.after is not None and self.after == self.before:
            raise ValueError("`after` and `before` are the same time: the window would be empty")
        self._zone = ZoneInfo(self.tz)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return self._zone


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
    score: ScoreRange | None = Field(
        None, description="The classifier's escalation score (0 easy .. 1 hard); the policy then loads the classifier."
    )
    pii: list[PiiKind] | None = Field(
        None,
        description="Personal data or secrets of these kinds are present (`true`: any kind): "
        + ", ".join(PII_KINDS)
        + ".",
    )
    language: list[str] | None = Field(
        None, description="The text's detected language is one of these ISO 639-1 codes (`en`, `de`, ...)."
    )
    code: bool | None = Field(None, description="Source code is (true) or is not (false) present in the text.")
    tools: bool | None = Field(None, description="The request offers tools / functions to call (or does not).")
    images: bool | None = Field(None, description="A message carries an image (or none does).")
    time: TimeWindow | None = Field(None, description="When the request arrives: time of day and days of the week.")
    budget: list[BudgetState] | None = Field(
        None,
        description="The tenant's budget state: `ok`, `near` (past `limits.budget_near` of a budget) or `over`.",
    )
    tenant: list[str] | None = Field(
        None, description="The tenant (the API key's team, else the tenant header); wildcards allowed."
    )
    metadata: dict[str, list[str]] | None = Field(
        None,
        description="Fields of the request's `metadata` → accepted values (case-insensitive); `*` accepts any.",
    )
    all: list[Condition] | None = Field(None, description="Every nested condition holds.")
    any: list[Condition] | None = Field(None, description="At least one nested condition holds.")
    not_: Condition | None = Field(None, alias="not", description="The nested condition does not hold.")

    _keyword_re: re.Pattern[str] | None = PrivateAttr(None)
    _regexes: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    _lists = field_validator("model", "keywords", "regex", "language", "budget", "tenant", mode="before")(_as_list)

    @field_validator("pii", mode="before")
    @classmethod
    def _pii_true_is_every_kind(cls, value: Any) -> Any:
        if value is True:
            return list(PII_KINDS)
        if value is False:
            raise ValueError("`pii: false` is not a condition; write `not: {pii: true}`")
        return _as_list(value)

    @field_validator("language")
    @classmethod
    def _language_codes(cls, value: list[str] | None) -> list[str] | None:
        for code in value or []:
            if not re.fullmatch(r"[a-z]{2,3}", code):
                raise ValueError(f"`{code}` is not an ISO 639-1 language code (two lower-case letters, e.g. `en`)")
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_values_are_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): [str(v) for v in _as_list(vs)] if isinstance(vs, list | str) else vs for k, vs in value.items()
            }
        return value

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
            raise ValueError(f"a condition needs at least one of: {', '.join(CONDITION_KEYS)}")
        if self.keywords:
            words = "|".join(re.escape(k.strip()) for k in self.keywords if k.strip())
            # \b on both sides: "api" must not match inside "rapid".
            self._keyword_re = re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)
        self._regexes = [re.compile(p) for p in self.regex or []]
        return self

    @property
    def uses_classifier(self) -> bool:
        nested = [*(self.all or []), *(self.any or []), *([self.not_] if self.not_ else [])]
        return self.score is not None or any(c.uses_classifier for c in nested)

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


class _RouteAction(_Strict):
    """Where matching requests go: `route`, and for `route: auto` the classifier's `threshold`."""

    route: str | list[str] = Field(
        description="`local`, `cloud`, `auto`, or a configured model's name; or an ordered list, tried in turn."
    )
    redact: list[PiiKind] | None = Field(
        None,
        description="Before any cloud model sees the request, replace personal data of these kinds (`true`: all) "
        "with placeholders (`<EMAIL_1>`), and put the originals back into the answer. Local models see the "
        "original.",
    )
    headers: dict[str, str] | None = Field(
        None, description="Extra HTTP headers sent with the request to remote models (a provider's project id...)."
    )
    max_tokens: int | None = Field(None, ge=1, description="Cap on completion tokens for matching requests.")
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

    @field_validator("redact", mode="before")
    @classmethod
    def _redact_true_is_every_kind(cls, value: Any) -> Any:
        if value is True:
            return list(PII_KINDS)
        if value is False:
            return None
        return _as_list(value)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"`{name}` is not a valid HTTP header name")
            if name.lower() in ("authorization", "content-type", "content-length", "host"):
                raise ValueError(f"the header `{name}` is set by the gateway and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _threshold_goes_with_auto(self) -> _RouteAction:
        _check_auto(self.route, self.threshold)
        if self.cascade is not None and self.route not in ("local", "auto"):
            raise ValueError("`cascade` needs `route: local` or `route: auto`: it escalates local answers")
        return self

    @field_validator("route")
    @classmethod
    def _route_is_known(cls, value: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
        return _check_target(value, info)


class Rule(_RouteAction):
    name: str = Field(pattern=RULE_NAME, description="Shown in x-router-reason, logs and the dashboard.")
    description: str | None = None
    when: Condition
    route: str | list[str] | None = Field(  # type: ignore[assignment]
        None,
        description="`local`, `cloud`, `auto`, or a configured model's name; or an ordered list, tried in turn. "
        "Required unless the rule says `deny`.",
    )
    deny: DenyAction | None = Field(
        None, description="Refuse matching requests with this message (a string, or `{message, status}`)."
    )
    priority: int = Field(
        0,
        description="Rules are tried from the highest priority down; rules of equal priority in the order written "
        "(a tenant's own rules before the shared ones, included fragments where they are included).",
    )
    pin: bool = Field(
        False,
        description="Never fall back to another route. A pinned local rule keeps requests off the cloud "
        "even when the local model fails (the client gets an error instead).",
    )

    _origin: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _pinned_rules_never_escalate(self) -> Rule:
        if self.pin and self.cascade is not None:
            raise ValueError("a pinned rule never leaves its route, so it cannot `cascade` to the cloud")
        if self.route is None and self.deny is None:
            raise ValueError("`route` is missing: say where matching requests go (or `deny` them)")
        if self.route is not None and self.deny is not None:
            raise ValueError("a rule either routes (`route`) or refuses (`deny`), not both")
        if self.deny is not None:
            routing = {
                "threshold",
                "cache",
                "cascade",
                "redact",
                "headers",
                "max_tokens",
                "pin",
            } & self.model_fields_set
            if routing:
                raise ValueError(f"a `deny` rule calls no model, so {sorted(routing)} would do nothing")
        return self

    @property
    def origin(self) -> str | None:
        """`file:line` the rule was written at (set by the loader); explain and errors show it."""
        return self._origin


class DefaultAction(_RouteAction):
    route: str | list[str] = Field("local", description="Where requests go when no rule matches.")


def _check_auto(route: str | list[str] | None, threshold: float | None) -> None:
    auto = route == "auto"
    if isinstance(route, list) and "auto" in route:
        raise ValueError("`auto` cannot be part of a route list; use it alone with a threshold")
    if auto and threshold is None:
        raise ValueError("`route: auto` needs a `threshold` (0..1); `router calibrate` finds one for a target share")
    if not auto and threshold is not None:
        raise ValueError("`threshold` only applies to `route: auto`")


def _check_target(value: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
    if value is None:
        return None
    known = (info.context or {}).get("models")
    targets = [value] if isinstance(value, str) else value
    if not targets:
        raise ValueError("a route list needs at least one entry")
    for target in targets:
        if target not in BUILTIN_TARGETS and known is not None and target not in known:
            choices = ", ".join([*BUILTIN_TARGETS, *sorted(known)])
            raise ValueError(f"unknown route `{target}`; expected one of: {choices}")
    return value


def _unique_names(rules: list[Rule]) -> list[Rule]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rule name `{rule.name}` is used twice; names must be unique")
        seen.add(rule.name)
    return rules


class PolicyFragment(_Strict):
    """A file of shared rules that policies `include:`."""

    description: str | None = None
    include: list[str] = Field(default_factory=list, description="Further fragments, relative to this file.")
    rules: list[Rule] = Field(default_factory=list)

    _names = field_validator("rules")(_unique_names)

    @field_validator("include", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)


class TenantPolicy(_Strict):
    """One tenant's overrides: its own rules, tried before the shared ones, and its own default."""

    default: DefaultAction | None = Field(None, description="Replaces the policy's default for this tenant.")
    rules: list[Rule] = Field(default_factory=list)

    _names = field_validator("rules")(_unique_names)


class Policy(PolicyFragment):
    version: Literal[1] = 1
    default: DefaultAction = Field(default_factory=DefaultAction)
    tenants: dict[str, TenantPolicy] = Field(
        default_factory=dict,
        description="Per-tenant overrides, by tenant name (the API key's team, else the tenant header's value).",
    )

    def all_rules(self) -> list[Rule]:
        return [*self.rules, *(rule for tenant in self.tenants.values() for rule in tenant.rules)]

    @property
    def uses_classifier(self) -> bool:
        """True when any route is `auto` or any condition reads the score: the gateway then loads the classifier."""
        defaults = [self.default, *(t.default for t in self.tenants.values() if t.default is not None)]
        return any(d.route == "auto" for d in defaults) or any(
            rule.route == "auto" or rule.when.uses_classifier for rule in self.all_rules()
        )


CONDITION_KEYS = tuple((field.alias or name) for name, field in Condition.model_fields.items() if name != "scope")
