"""OpenAI's Responses API (its stateless core) translated onto the gateway's chat request, and back.

A Responses request is kept whole for an OpenAI model (`backends/native_api.py` forwards it, so
encrypted reasoning, `prompt_cache_key`, server and custom tools reach the provider as sent). For every
other model it is translated: `input` (a string, or items: messages with `input_text` / `input_image` /
`output_text` parts, `function_call` / `custom_tool_call` items and their outputs) and `instructions`
become chat messages; function and custom `tools`, `tool_choice`, `max_output_tokens` and `text.format`
(JSON output) their chat equivalents (a custom tool, free-form text in, is a function with one string
argument `input`, and its call goes back as a `custom_tool_call`). What chat cannot carry is listed
(`translation.py`): reasoning settings and items and server tools (web search, tool search, namespaces)
are omitted from a translated answer and named in `x-router-omitted`; history items only the Responses
API can carry (a web search call) need an OpenAI model. The answer goes back as a `response` object
(`message`, `function_call` and `custom_tool_call` output items, usage, `incomplete_details` when cut
by the token limit), or as the Responses stream events. Stored responses are not kept, so
`previous_response_id` is refused with a 400 that says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from router.api.translation import Leftovers
from router.errors import InvalidRequest, RouterError
from router.types import Completion, StreamDelta, Usage

FORWARDED_HEADERS = ("openai-beta", "openai-organization", "openai-project")
CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


class ResponsesRequest(BaseModel):
    """`POST /v1/responses`. Fields the gateway does not read are kept for an OpenAI model (forwarded
    whole) and, for any other, listed in `x-router-omitted` when they shape the answer."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field("auto", min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None


# -- request ----------------------------------------------------------------------------------------------


def custom_tools(body: ResponsesRequest) -> frozenset[str]:
    """The names of the request's custom (free-form) tools: their calls go back as `custom_tool_call`."""
    return frozenset(str(t.get("name")) for t in body.tools or [] if t.get("type") == "custom")


def _add_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None:
        messages[-1]["tool_calls"].append(call)  # parallel calls share one assistant turn
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_output(item: dict[str, Any]) -> dict[str, Any]:
    output = item.get("output", "")
    if isinstance(output, list):
        output = "\n".join(str(p.get("text", "")) for p in output if isinstance(p, Mapping))
    text = output if isinstance(output, str) else json.dumps(output)
    return {"role": "tool", "tool_call_id": str(item.get("call_id", "")), "content": text}


def _parts(content: str | list[Any], where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image":
            url = part.get("image_url") or part.get("file_id") or ""
            parts.append({"type": "image_url", "image_url": {"url": str(url)}})
        else:
            raise InvalidRequest(f"{where}.{i}: unsupported content part `{kind}`", param=f"{where}.{i}")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def chat_messages(body: ResponsesRequest, left: Leftovers) -> tuple[dict[str, Any], ...]:
    if body.previous_response_id:
        raise InvalidRequest(
            "This gateway does not store responses, so `previous_response_id` cannot be continued: send the "
            "conversation's items in `input` instead.",
            param="previous_response_id",
            code="stored_responses_unsupported",
        )
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        return (*messages, {"role": "user", "content": body.input})
    for i, item in enumerate(body.input):
        where = f"input.{i}"
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            role = item.get("role", "user")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"{where}.role: unknown role `{role}`", param=f"{where}.role")
            role = "system" if role == "developer" else role  # chat templates know `system`
            messages.append({"role": role, "content": _parts(item.get("content", ""), f"{where}.content")})
        elif kind in ("function_call", "custom_tool_call"):
            custom = kind == "custom_tool_call"
            arguments = json.dumps({"input": item.get("input", "")}) if custom else item.get("arguments", "{}")
            function = {"name": str(item.get("name", "")), "arguments": str(arguments)}
            _add_call(messages, {"id": str(item.get("call_id", "")), "type": "function", "function": function})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(_tool_output(item))
        elif kind == "reasoning":
            left.omit("reasoning")  # encrypted: only the model that wrote it reads it
        elif isinstance(kind, str):
            left.need(f"`{kind}` items")
        else:
            raise InvalidRequest(f"{where}.type: an input item's type must be a string", param=f"{where}.type")
    if not messages or all(m["role"] == "system" for m in messages):
        raise InvalidRequest("`input` holds no message to answer.", param="input")
    return tuple(messages)


def generation(body: ResponsesRequest, left: Leftovers) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {}
    for name, value in (("max_tokens", body.max_output_tokens), ("temperature", body.temperature),
                        ("top_p", body.top_p), ("user", body.user)):  # fmt: skip
        if value is not None:
            params[name] = value
    passthrough: dict[str, Any] = {}
    if body.tools:
        tools = []
        for tool in body.tools:
            kind = tool.get("type")
            if kind == "function":
                function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
            elif kind == "custom" and tool.get("name"):
                function = {"name": tool["name"], "description": str(tool.get("description", "")),
                            "parameters": CUSTOM_INPUT}  # fmt: skip
            else:  # a hosted tool (web search, tool search, file search, a namespace of MCP tools...)
                left.omit(f"`{kind}` tool")
                continue
            tools.append({"type": "function", "function": function})
        if tools:
            passthrough["tools"] = tools
    if body.tool_choice is not None and "tools" in passthrough:
        choice = body.tool_choice
        if isinstance(choice, Mapping) and choice.get("type") in ("function", "custom"):
            choice = {"type": "function", "function": {"name": choice.get("name", "")}}
        elif isinstance(choice, Mapping):  # a hosted tool or an allowed-tools list: the model chooses
            left.omit("tool_choice")
            choice = "auto"
        passthrough["tool_choice"] = choice
    fmt = (body.text or {}).get("format") if isinstance(body.text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        passthrough["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        passthrough["response_format"] = {"type": "json_object"}
    if body.metadata:
        passthrough["metadata"] = body.metadata
    if (body.model_extra or {}).get("reasoning"):
        left.omit("reasoning")
    return params, passthrough


# -- answer ----------------------------------------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _message_item(request_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": f"msg_{request_id}", "status": status, "role": "assistant", "content": content}


def _call_item(
    request_id: str, index: int, call: Mapping[str, Any], status: str = "completed",
    custom: frozenset[str] = frozenset(),
) -> dict[str, Any]:  # fmt: skip
    function = call.get("function") or {}
    if function.get("name") in custom:  # a free-form tool: its one `input` argument is the call
        try:
            text = json.loads(function.get("arguments") or "{}").get("input", "")
        except (ValueError, AttributeError):
            text = function.get("arguments", "")
        return {"type": "custom_tool_call", "id": f"ctc_{request_id}_{index}",
                "call_id": call.get("id") or f"call_{index}", "name": function.get("name", ""),
                "input": str(text) if status == "completed" else "", "status": status}  # fmt: skip
    return {
        "type": "function_call",
        "id": f"fc_{request_id}_{index}",
        "call_id": call.get("id") or f"call_{index}",
        "name": function.get("name", ""),
        "arguments": function.get("arguments", "") if status == "completed" else "",
        "status": status,
    }


def response_object(
    request_id: str, body: ResponsesRequest, model: str, output: list[dict[str, Any]], usage: Usage | None,
    finish_reason: str | None, status: str = "completed",
) -> dict[str, Any]:  # fmt: skip
    cut = finish_reason == "length" and status == "completed"
    return {
        "id": f"resp_{request_id}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else status,
        "model": model,
        "output": output,
        "usage": _usage(usage) if usage is not None else None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "error": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": body.tools or [],
        "tool_choice": body.tool_choice or "auto",
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "text": body.text or {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": body.metadata or {},
    }


def completed_response(request_id: str, body: ResponsesRequest, completion: Completion) -> dict[str, Any]:
    output = [_message_item(request_id, completion.content)] if completion.content else []
    calls = completion.message_extra.get("tool_calls") or []
    output += [_call_item(request_id, i, call, custom=custom_tools(body)) for i, call in enumerate(calls)]
    return response_object(request_id, body, completion.model, output, completion.usage, completion.finish_reason)


class EventWriter:
    """The pipeline's stream deltas as Responses stream events (`response.created` … `response.completed`)."""

    def __init__(self, request_id: str, body: ResponsesRequest, model: str) -> None:
        self._id = request_id
        self._body = body
        self._model = model
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._text: list[str] | None = None  # the open message's text, while one is open
        self._calls: dict[int, dict[str, Any]] = {}  # tool-call index → its item, while open
        self._custom = custom_tools(body)
        self._usage: Usage | None = None
        self._finish: str | None = None

    def _event(self, kind: str, **data: Any) -> bytes:
        self._seq += 1
        payload = {"type": kind, "sequence_number": self._seq, **data}
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    def _response(self, status: str) -> dict[str, Any]:
        return response_object(self._id, self._body, self._model, self._output, self._usage, self._finish, status)

    def start(self) -> bytes:
        return self._event("response.created", response=self._response("in_progress")) + self._event(
            "response.in_progress", response=self._response("in_progress")
        )

    def _close_text(self) -> bytes:
        if self._text is None:
            return b""
        text, self._text = "".join(self._text), None
        index = len(self._output) - 1
        item = _message_item(self._id, text)
        self._output[index] = item
        part = item["content"][0]
        return (
            self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text)
            + self._event(
                "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
            )
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def delta(self, delta: StreamDelta) -> bytes:
        out = b""
        if delta.model:
            self._model = delta.model
        if delta.content:
            if self._text is None:
                self._text = []
                item = _message_item(self._id, "", status="in_progress")
                self._output.append(item)
                index = len(self._output) - 1
                out += self._event("response.output_item.added", output_index=index, item=item)
                part = {"type": "output_text", "text": "", "annotations": []}
                out += self._event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            self._text.append(delta.content)
            out += self._event("response.output_text.delta", item_id=f"msg_{self._id}",
                               output_index=len(self._output) - 1, content_index=0, delta=delta.content)  # fmt: skip
        for call in delta.delta_extra.get("tool_calls") or []:
            out += self._close_text()
            index = int(call.get("index", 0))
            function = call.get("function") or {}
            if index not in self._calls:
                item = _call_item(self._id, index, call, status="in_progress", custom=self._custom)
                self._calls[index] = {**item, "output_index": len(self._output), "arguments": "", "function": function}
                self._output.append(item)
                out += self._event("response.output_item.added", output_index=len(self._output) - 1, item=item)
            open_call = self._calls[index]
            if open_call["type"] == "custom_tool_call":  # its JSON wrapper is unwrapped once whole, at the end
                open_call["arguments"] += function.get("arguments") or ""
            elif function.get("arguments"):
                open_call["arguments"] += function["arguments"]
                out += self._event("response.function_call_arguments.delta", item_id=open_call["id"],
                                   output_index=open_call["output_index"], delta=function["arguments"])  # fmt: skip
        self._finish = delta.finish_reason or self._finish
        self._usage = delta.usage or self._usage
        return out

    def end(self) -> bytes:
        out = self._close_text()
        for open_call in self._calls.values():
            index = open_call.pop("output_index")
            function = open_call.pop("function")
            if open_call["type"] == "custom_tool_call":
                whole = {"id": open_call["call_id"], "function": {**function, "arguments": open_call["arguments"]}}
                item = _call_item(self._id, index, whole, custom=self._custom)
                item["id"] = open_call["id"]
                out += self._event("response.custom_tool_call_input.done", item_id=item["id"], output_index=index,
                                   input=item["input"])  # fmt: skip
            else:
                item = {**open_call, "status": "completed"}
                out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   arguments=item["arguments"])  # fmt: skip
            self._output[index] = item
            out += self._event("response.output_item.done", output_index=index, item=item)
        return out + self._event("response.completed", response=self._response("completed"))

    def error(self, exc: RouterError) -> bytes:
        return self._event("error", code=exc.code or "upstream_error", message=exc.message, param=None)
