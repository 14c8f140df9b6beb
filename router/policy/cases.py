"""What a policy test case may say: a request, and where it must go.

Cases live in a policy's `tests:` or in a file of their own (a list, or `{tests: [...]}`);
`router policy test` runs them (`testing.py`). Everything left out of `expect` is not checked, so a
case says only what its author cares about.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Expectation(_Strict):
    """What must come out; unset fields are not checked."""

    route: str | None = Field(None, description="`local`, `cloud`, `deny`, or the configured model that answers first.")
    rule: str | None = Field(None, description="The rule that must match; `default` when no rule may match.")
    intent: str | None = Field(None, description="The intent the request must match; `none` when it must match none.")
    redact: list[str] | None = Field(None, description="The PII kinds redacted before a cloud model sees it.")
    cache: bool | None = Field(None, description="Whether the answer may be cached (and served from the cache).")
    cascade: bool | None = Field(None, description="Whether the local answer is checked by the cascade.")
    pinned: bool | None = Field(None, description="Whether the request is kept off the cloud whatever happens.")
    status: int | None = Field(None, description="For `route: deny`: the HTTP status of the refusal.")

    @model_validator(mode="after")
    def _something(self) -> Expectation:
        if not self.model_fields_set:
            raise ValueError("`expect` checks nothing; say at least one of: " + ", ".join(Expectation.model_fields))
        return self


class PolicyCase(_Strict):
    """One request and what the policy must do with it."""

    name: str | None = Field(None, description="Shown when the case fails; default: its prompt.")
    prompt: str | None = Field(None, description="The last user message (shorthand for `messages`).")
    messages: list[dict[str, Any]] | None = Field(None, description="The conversation, in OpenAI's chat format.")
    model: str = Field("auto", description="The model name the client sends.")
    headers: dict[str, str] = Field(default_factory=dict)
    tenant: str | None = None
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(None, description="Tools offered, as in the chat API.")
    response_format: dict[str, Any] | None = None
    budget: Literal["ok", "near", "over"] | None = Field(None, description="The tenant's budget state to assume.")
    escalated_before: bool = Field(
        False, description="Assume an earlier turn of this conversation was answered by the cloud (`session: sticky`)."
    )
    expect: Expectation

    @model_validator(mode="after")
    def _one_request(self) -> PolicyCase:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give the request as `prompt` or as `messages` (exactly one)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        text = self.prompt if self.prompt is not None else str((self.messages or [{}])[-1].get("content", ""))
        return text if len(text) <= 50 else text[:47] + "..."


class CaseFile(_Strict):
    tests: list[PolicyCase]
