"""Anthropic's Messages API translated onto the gateway's own request and answer, and back.

A Messages request is kept whole for an Anthropic model (`backends/native_api.py` forwards it, so
thinking signatures, `cache_control`, context management and server tools reach the provider as sent)
and becomes the chat request the pipeline serves for every other model: `system` (and the `system`
turns agents put among the messages) become system messages, content blocks OpenAI content parts
(`image` → `image_url`), `tool_use` blocks the assistant's `tool_calls`, `tool_result` blocks `tool`
messages, custom `tools` function tools and `stop_sequences` stops. What chat cannot carry is listed
(`translation.py`): thinking, context management, output settings and server tools are omitted from a
translated answer (and named in `x-router-omitted`); a document or a server tool's result in the
history needs an Anthropic model. The translated answer goes back as a Messages response (text and
`tool_use` blocks, `stop_reason`, usage), or as Anthropic's stream events (`message_start`,
`content_block_*`, `message_delta`, `message_stop`). Errors keep Anthropic's shape,
`{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from router.api.translation import Leftovers
from router.errors import InvalidRequest, RouterError
from router.types import Completion, StreamDelta, Usage

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
HINTS = ("thinking", "context_management", "output_config", "container", "mcp_servers")
"""Request fields that shape how Claude answers but not what it is asked: a translated answer goes without."""


class MessagesRequest(BaseModel):
    """Anthropic's `POST /v1/messages` body. Fields the gateway does not read are kept for an Anthropic
    model (forwarded whole) and, for any other, listed in `x-router-omitted` when they shape the answer."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


# -- request ----------------------------------------------------------------------------------------------


def _text_of(blocks: str | list[Any], where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    texts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, Mapping) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.{i}: expected a text block", param=f"{where}.{i}")
        texts.append(block["text"])
    return "\n".join(texts)


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, Mapping) and source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise InvalidRequest(f"{where}.source: expected a base64 or url image source", param=f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: str | list[dict[str, Any]], where: str, left: Leftovers) -> list[dict[str, Any]]:
    """One user turn: its tool results first (as `tool` messages), then its text and images."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        kind = block.get("type")
        at = f"{where}.content.{i}"
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            result = block.get("content", "")
            text = _text_of(result, f"{at}.content") if isinstance(result, list | str) else json.dumps(result)
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text})
        elif isinstance(kind, str) and kind:
            left.need(f"`{kind}` blocks")  # a document, a search result: only Claude reads them
        else:
            raise InvalidRequest(f"{at}: a content block needs a `type`", param=at)
    if all(p["type"] == "text" for p in parts):
        text = "\n".join(p["text"] for p in parts)
        return results + ([{"role": "user", "content": text}] if parts else [])
    return [*results, {"role": "user", "content": parts}]


def _assistant_message(content: str | list[dict[str, Any]], where: str, left: Leftovers) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for i, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})  # fmt: skip
        elif kind in ("thinking", "redacted_thinking"):
            left.omit("thinking")  # earlier reasoning: another model continues without it
        elif isinstance(kind, str) and kind:
            left.need(f"`{kind}` blocks")  # a server tool's call or result: only Claude continues from it
        else:
            raise InvalidRequest(f"{where}.content.{i}: a content block needs a `type`", param=f"{where}.content.{i}")
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: list[dict[str, Any]], left: Leftovers) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if "name" not in tool:
            raise InvalidRequest(f"tools.{i}: a tool needs a `name`", param=f"tools.{i}.name")
        if tool.get("type") not in (None, "custom"):  # a server tool (web search, code execution...)
            left.omit(f"server tool `{tool['name']}`")
            continue
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Mapping[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind), "auto")


def chat_messages(
    body: MessagesRequest | CountTokensRequest, left: Leftovers | None = None
) -> tuple[dict[str, Any], ...]:
    left = left if left is not None else Leftovers()
    messages: list[dict[str, Any]] = []
    if body.system:
        messages.append({"role": "system", "content": _text_of(body.system, "system")})
    for i, message in enumerate(body.messages):
        where = f"messages.{i}"
        if message.role == "user":
            messages += _user_messages(message.content, where, left)
        elif message.role == "system":  # Claude Code's reminders between turns
            messages.append({"role": "system", "content": _text_of(message.content, f"{where}.content")})
        else:
            messages.append(_assistant_message(message.content, where, left))
    return tuple(messages)


def generation(body: MessagesRequest, left: Leftovers) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params the gateway understands, fields passed through to the upstream) of a Messages request."""
    params: dict[str, Any] = {"max_tokens": body.max_tokens}
    if body.temperature is not None:
        params["temperature"] = body.temperature
    if body.top_p is not None:
        params["top_p"] = body.top_p
    if body.top_k is not None:  # the local model samples with it; a chat-only cloud model refuses it
        params["top_k"] = body.top_k
    if body.stop_sequences:
        params["stop"] = body.stop_sequences
    passthrough: dict[str, Any] = {}
    tools = _tools(body.tools, left) if body.tools else []
    if tools:
        passthrough["tools"] = tools
        if body.tool_choice:
            passthrough["tool_choice"] = _tool_choice(body.tool_choice)
    if body.metadata and body.metadata.get("user_id"):
        params["user"] = str(body.metadata["user_id"])
    extra = body.model_extra or {}
    for hint in HINTS:
        value = extra.get(hint)
        if value and not (isinstance(value, Mapping) and value.get("type") == "disabled"):
            left.omit(hint)
    return params, passthrough


# -- answer ----------------------------------------------------------------------------------------------


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = {"_raw": function.get("arguments")}  # the model's malformed arguments, kept visible
    return {"type": "tool_use", "id": call.get("id") or "toolu", "name": function.get("name", ""), "input": arguments}


def usage_of(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def message_body(request_id: str, completion: Completion) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if completion.content:
        content.append({"type": "text", "text": completion.content})
    content += [_tool_use(call) for call in completion.message_extra.get("tool_calls") or []]
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": STOP_REASONS.get(completion.finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(completion.usage),
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventWriter:
    """Turns the pipeline's stream deltas into Anthropic's stream events for one response."""

    def __init__(self, request_id: str, model: str, input_tokens: int) -> None:
        self._id = f"msg_{request_id}"
        self._model = model
        self._input_tokens = input_tokens
        self._block = -1
        self._open: str | None = None  # the kind of the block now open: text | tool_use
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool-call index → our block index
        self._stop = "end_turn"
        self._output_tokens = 0

    def start(self) -> bytes:
        message = {"id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self._input_tokens, "output_tokens": 0}}  # fmt: skip
        return event("message_start", {"type": "message_start", "message": message}) + event("ping", {"type": "ping"})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _begin(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._open = block["type"]
        return out + event("content_block_start", {"type": "content_block_start", "index": self._block,
                                                   "content_block": block})  # fmt: skip

    def delta(self, delta: StreamDelta) -> bytes:
        out = b""
        if delta.content:
            if self._open != "text":
                out += self._begin({"type": "text", "text": ""})
            out += event("content_block_delta", {"type": "content_block_delta", "index": self._block,
                                                 "delta": {"type": "text_delta", "text": delta.content}})  # fmt: skip
        for call in delta.delta_extra.get("tool_calls") or []:
            index = int(call.get("index", 0))
            function = call.get("function") or {}
            if index not in self._tool_blocks:
                out += self._begin({"type": "tool_use", "id": call.get("id") or f"toolu_{index}",
                                    "name": function.get("name", ""), "input": {}})  # fmt: skip
                self._tool_blocks[index] = self._block
            if function.get("arguments"):
                out += event("content_block_delta", {"type": "content_block_delta", "index": self._tool_blocks[index],
                             "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}})  # fmt: skip
        if delta.finish_reason:
            self._stop = STOP_REASONS.get(delta.finish_reason, "end_turn")
        if delta.usage is not None:
            self._output_tokens = delta.usage.completion_tokens
        return out

    def end(self) -> bytes:
        out = self._close()
        out += event("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": self._stop, "stop_sequence": None},
                                       "usage": {"output_tokens": self._output_tokens}})  # fmt: skip
        return out + event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(exc: RouterError) -> bytes:
        return event("error", error_body(exc.status_code, exc.message))
