"""What a rule's `when:` may say: the conditions, and the ranges and time windows they use.

Every condition given must hold (AND); within a list, any entry may match (OR); `all` / `any` / `not`
compose. Matching lives in `matchers.py`; this file only says what may be written.
"""

from __future__ import annotations

import re
from datetime import time as clock_time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from router.pii import PII_KINDS

PiiKind = Literal["email", "phone", "credit_card", "iban", "national_id", "ip_address", "secret"]
BudgetState = Literal["ok", "near", "over"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def pii_kinds(value: Any, when_false: Any) -> Any:
    """`true` means every PII kind; `false` is `when_false` (a callable may raise instead)."""
    if value is True:
        return list(PII_KINDS)
    if value is False:
        return when_false() if callable(when_false) else when_false
    return _as_list(value)


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
    scope: Literal["last_user", "conversation", "all"] = Field(
        "last_user",
        description="Text that keywords, regex, pii, code, language and intent look at: the last user message; "
        "the conversation (the recent user and assistant turns, newest first, about 1,200 characters; for "
        "`intent`: the newest of the last three user messages that matches one, so a follow-up keeps its "
        "conversation's intent); or all messages, system prompt included.",
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
    api: list[Literal["chat", "completions", "messages", "responses"]] | None = Field(
        None, description="The API the client called: chat (completions), completions (text), messages (Anthropic's), "
        "responses (OpenAI's)."
    )  # fmt: skip
    client: list[str] | None = Field(
        None,
        description="The client's `user-agent`, shell-style wildcards, case-insensitive (`claude-cli/*`, `codex*`).",
    )
    images: bool | None = Field(None, description="A message carries an image (or none does).")
    needs: list[Literal["tools", "json", "vision", "audio", "files", "logprobs"]] | None = Field(
        None,
        description="The request needs one of these capabilities (tools, json output, vision, audio, files, "
        "logprobs). "
        "Without a rule, such a request already goes to the first capable model of its chain.",
    )
    intent: list[str] | None = Field(
        None,
        description="The request's nearest intent (see the policy's `intents:`) is one of these. Matched on "
        "`scope` (the last user message by default) by embedding similarity to the intents' examples.",
    )
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

    _lists = field_validator(
        "model", "keywords", "regex", "language", "budget", "tenant", "needs", "intent", "api", "client", mode="before"
    )(_as_list)

    @field_validator("pii", mode="before")
    @classmethod
    def _pii_true_is_every_kind(cls, value: Any) -> Any:
        return pii_kinds(value, _pii_false)

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
        return self.score is not None or any(c.uses_classifier for c in self._nested())

    def _nested(self) -> list[Condition]:
        return [*(self.all or []), *(self.any or []), *([self.not_] if self.not_ else [])]

    @property
    def intents(self) -> set[str]:
        """Every intent this condition names, nested ones included."""
        return set(self.intent or ()).union(*(c.intents for c in self._nested()))

    @property
    def intent_scopes(self) -> set[str]:
        """The scopes this condition matches intents on."""
        return ({self.scope} if self.intent else set()).union(*(c.intent_scopes for c in self._nested()))

    @property
    def keyword_pattern(self) -> re.Pattern[str] | None:
        return self._keyword_re

    @property
    def compiled_regexes(self) -> list[re.Pattern[str]]:
        return self._regexes


def _pii_false() -> None:
    raise ValueError("`pii: false` is not a condition; write `not: {pii: true}`")


CONDITION_KEYS = tuple((field.alias or name) for name, field in Condition.model_fields.items() if name != "scope")
