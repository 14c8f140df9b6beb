"""The routing policy's YAML schema, as pydantic models.

A policy is a list of rules and a default. Each rule has a `when` (conditions, all of which must hold)
and an action (`route`, or `deny`). Unknown keys are errors, so a typo is reported with its line instead
of being silently ignored. Matching lives in `matchers.py`, loading (includes, per-tenant overrides) in
`engine.py`; this file (with `conditions.py` for `when:` and `actions.py` for `cache:`, `cascade:`, `deny:`)
only says what may be written.
`router policy schema` prints it as JSON Schema (`policies/policy.schema.json`, for editors).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from router.cascade_rule import GAIN_METRICS
from router.policy.actions import CacheAction, CascadeAction, DenyAction
from router.policy.cases import PolicyCase
from router.policy.conditions import (  # re-exported: what a policy may say, in one import
    CONDITION_KEYS,
    WEEKDAYS,
    BudgetState,
    Condition,
    PiiKind,
    Range,
    ScoreRange,
    TimeWindow,
    Weekday,
    _as_list,
    _Strict,
    pii_kinds,
)

RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
BUILTIN_TARGETS = ("local", "cloud", "auto")
__all__ = [
    "CONDITION_KEYS", "WEEKDAYS", "BudgetState", "CacheAction", "CascadeAction", "Condition", "DenyAction",
    "PiiKind", "Range", "ScoreRange", "TimeWindow", "Weekday",
]  # fmt: skip


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
    session: Literal["sticky"] | None = Field(
        None,
        description="`sticky`: once a cloud model has answered a turn of this conversation (known by the "
        "`x-session-id` header, else by its earlier messages), its later turns that would go local go to "
        "the cloud too, for `sessions.ttl_s`.",
    )

    shadow: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of these requests' local answers shadowed and judged against the reference cloud model "
        "(overrides the gateway's `shadow.share`); `false` or 0: never (private requests). Pinned-local "
        "requests are never shadowed.",
    )

    @field_validator("shadow", mode="before")
    @classmethod
    def _shadow_false_is_never(cls, value: Any) -> Any:
        if value is True:
            raise ValueError("`shadow` takes a share (0..1) or `false`; the gateway's `shadow.share` is the default")
        return 0.0 if value is False else value

    @field_validator("redact", mode="before")
    @classmethod
    def _redact_true_is_every_kind(cls, value: Any) -> Any:
        return pii_kinds(value, None)

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
        if self.pin and self.session is not None:
            raise ValueError("a pinned rule never leaves its route, so a `sticky` session cannot move it")
        if self.pin and self.shadow:
            raise ValueError("a pinned rule keeps its requests off the cloud, so they are never shadowed")
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
                "session",
                "shadow",
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


class Intent(_Strict):
    """A kind of request, given by examples of how people ask for it."""

    description: str | None = None
    examples: list[str] = Field(
        min_length=1, description="Utterances of this intent; five or more, phrased the ways people ask."
    )
    counter_examples: list[str] = Field(
        default_factory=list,
        description="Near misses that are *not* this intent: a request nearer one of these than to every "
        "example does not match it.",
    )
    threshold: float | None = Field(
        None, gt=0, le=1, description="Cosine similarity the nearest example needs; unset: `intent_threshold`."
    )

    @field_validator("examples", "counter_examples")
    @classmethod
    def _texts(cls, value: list[str]) -> list[str]:
        texts = [text.strip() for text in value]
        if any(not text for text in texts):
            raise ValueError("an example is empty")
        return texts


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
    intents: dict[str, Intent] = Field(
        default_factory=dict,
        description="Named intents that rules match with `when: {intent: NAME}`: each by its examples, compared "
        "with the request by embedding similarity.",
    )
    intent_threshold: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Cosine similarity an intent's nearest example needs, unless the intent sets its own.",
    )
    intent_margin: float = Field(
        0.03,
        ge=0,
        le=1,
        description="How much nearer the best intent must be than the runner-up; closer calls match no intent.",
    )
    tests: list[PolicyCase] = Field(
        default_factory=list,
        description="Cases `router policy test` and `router policy check` run: a request and where it must go.",
    )
    tenants: dict[str, TenantPolicy] = Field(
        default_factory=dict,
        description="Per-tenant overrides, by tenant name (the API key's team, else the tenant header's value).",
    )

    def all_rules(self) -> list[Rule]:
        return [*self.rules, *(rule for tenant in self.tenants.values() for rule in tenant.rules)]

    @field_validator("intents")
    @classmethod
    def _intent_names(cls, value: dict[str, Intent]) -> dict[str, Intent]:
        for name in value:
            if not re.fullmatch(RULE_NAME, name):
                raise ValueError(f"intent name `{name}`: use letters, digits, `_`, `.` and `-`")
        return value

    @property
    def intent_scopes(self) -> frozenset[str]:
        """The scopes rules match intents on (empty: no rule names an intent)."""
        return frozenset().union(*(rule.when.intent_scopes for rule in self.all_rules()))

    @property
    def uses_sessions(self) -> bool:
        """True when a rule or default says `session: sticky`: cloud answers are then remembered."""
        defaults = [self.default, *(t.default for t in self.tenants.values() if t.default is not None)]
        return any(d.session for d in defaults) or any(rule.session for rule in self.all_rules())

    @property
    def uses_classifier(self) -> bool:
        """True when any route is `auto`, any condition reads the score or any cascade weighs the head's strong
        chance (`expected_gain`, `prompt_gain`): the gateway then loads the classifier."""
        defaults = [self.default, *(t.default for t in self.tenants.values() if t.default is not None)]
        actions = [*defaults, *self.all_rules()]
        return (
            any(a.route == "auto" for a in actions)
            or any(rule.when.uses_classifier for rule in self.all_rules())
            or any(a.cascade is not None and a.cascade.metric in GAIN_METRICS for a in actions)
        )
