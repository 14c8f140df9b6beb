"""OpenAI wire-format request models.

Strict types (a string where a number belongs is a 400, as at OpenAI), but open to fields we do not
know: those are kept in `model_extra` and passed to the cloud untouched, which is what makes the gateway
a drop-in for clients that use newer or provider-specific parameters.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

GENERATION_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(_Open):
    include_usage: bool = False


CONTENT_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
"""The content parts of OpenAI's chat messages; any other type is refused rather than silently dropped."""


def check_content_parts(parts: list[dict[str, Any]], known: tuple[str, ...] = CONTENT_PART_TYPES) -> None:
    """A 400 naming the first part that is not a known type, or a text part without its text."""
    for i, part in enumerate(parts):
        kind = part.get("type")
        if not isinstance(kind, str):
            raise PydanticCustomError("part_type", f"content[{i}] has no `type` (one of {', '.join(known)})")
        if kind not in known:
            raise PydanticCustomError(
                "part_type", f"content[{i}] is of type `{kind}`, which this API does not know; use one of "
                f"{', '.join(known)}",
            )  # fmt: skip
        if kind == "text" and not isinstance(part.get("text"), str):
            raise PydanticCustomError("part_text", f"content[{i}] is a text part without a string `text`")


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _known_parts(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        if isinstance(value, list):
            check_content_parts(value)
        return value

    @model_validator(mode="after")
    def _what_the_role_needs(self) -> ChatMessage:
        # As OpenAI checks: a message an upstream cannot read is the client's error (400), not a failure
        # of the upstream that would count against its circuit breaker.
        if self.role == "tool" and self.tool_call_id is None:
            raise PydanticCustomError("missing", "a tool message needs `tool_call_id`", {"field": "tool_call_id"})
        if self.role == "function" and self.name is None:
            raise PydanticCustomError("missing", "a function message needs `name`", {"field": "name"})
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.model_extra)):
            raise PydanticCustomError("missing", f"a {self.role} message needs `content`", {"field": "content"})
        return self


class _GenerationParams(_Open):
    model: str = Field("auto", min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def generation_params(self) -> dict[str, Any]:
        """The parameters the gateway itself understands, with OpenAI's synonyms folded in."""
        return {name: getattr(self, name) for name in GENERATION_PARAMS if getattr(self, name) is not None}

    def passthrough(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ChatCompletionRequest(_GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def generation_params(self) -> dict[str, Any]:
        params = super().generation_params()
        # Newer clients send max_completion_tokens; it means the same cap as max_tokens.
        if self.max_completion_tokens is not None:
            params["max_tokens"] = self.max_completion_tokens
        return params

    def message_dicts(self) -> tuple[dict[str, Any], ...]:
        return tuple(m.model_dump(exclude_none=True) for m in self.messages)


class TextCompletionRequest(_GenerationParams):
    prompt: str | list[str] = Field(min_length=1)
    suffix: str | None = None
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("the gateway answers one prompt per request; send a list of exactly one string")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
