"""Tool calling on the in-process model, for models whose chat template renders tools (Qwen2.5's).

The request's `tools` go into the prompt through the model's own template (its `# Tools` section), and
the model answers a call as `<tool_call>{"name": …, "arguments": {…}}</tool_call>`: the Hermes format
Qwen2.5 was trained on. The answer is parsed back into OpenAI's `tool_calls` (the Anthropic and
Responses adapters turn those into `tool_use` blocks and `function_call` items). When `tool_choice`
requires a call (`required`, or one named function), sampling is constrained by a grammar built from
the tools' JSON schemas, so the call's name exists and its arguments match the schema. `tool_choice:
none` renders no tools at all.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from router.errors import InvalidRequest
from router.types import StreamDelta

CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
FENCED = re.compile(r"^```(?:json)?\s*(\{.*\})\s*```$|^(\{.*\})$", re.DOTALL)
"""A whole answer that is one call object, bare or in a code fence: what a coder model writes at times
instead of the tags (accepted only when it names an offered tool and has object arguments)."""
OPEN = "<tool_call>"


def offered_tools(passthrough: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The function tools a request offers the model (none when `tool_choice` is `none`)."""
    if passthrough.get("tool_choice") == "none":
        return []
    tools = passthrough.get("tools") or []
    return [t for t in tools if isinstance(t, Mapping) and t.get("type") == "function" and t.get("function")]


AFTER_RESULTS = "Answer the question using the tool response above."


def for_prompt(
    messages: Sequence[Mapping[str, Any]], tools: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools) to render. Once the turn ends with tool results, the default model answers from
    them in text: shown its tools again it repeats the call it already made (measured on Qwen2.5-Coder
    1.5B, every time), so the tools are left out and a system line asks for the answer. A chain of
    several calls therefore needs a bigger model (the coding-agent policy keeps agent loops on theirs)."""
    rendered = template_messages(messages)
    if tools and messages and messages[-1].get("role") == "tool":
        return [*rendered, {"role": "system", "content": AFTER_RESULTS}], []
    return rendered, tools


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a Hermes-style template reads them: a call's `arguments` an object (templates `tojson`
    it; a JSON string would be encoded twice)."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if not calls:
            out.append(dict(message))
            continue
        decoded = []
        for call in calls:
            function = dict(call.get("function") or {})
            if isinstance(function.get("arguments"), str):
                # The model's own malformed arguments stay as they were.
                with contextlib.suppress(ValueError):
                    function["arguments"] = json.loads(function["arguments"] or "{}")
            decoded.append({**call, "function": function})
        out.append({**message, "tool_calls": decoded})
    return out


def _call(name: Any, arguments: Any) -> dict[str, Any]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": str(name), "arguments": json.dumps(arguments)}}  # fmt: skip


def _bare_call(text: str, names: frozenset[str]) -> dict[str, Any] | None:
    match = FENCED.match(text.strip())
    if match is None:
        return None
    try:
        call = json.loads(match.group(1) or match.group(2))
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("name") not in names or not isinstance(call.get("arguments"), dict):
        return None
    return _call(call["name"], call["arguments"])


def parse_calls(text: str, names: frozenset[str] = frozenset()) -> tuple[str | None, list[dict[str, Any]]]:
    """(the text outside the calls, the calls in OpenAI's shape). A call whose JSON does not parse stays
    in the text: the client sees what the model wrote rather than a call that was never made."""
    if OPEN not in text and (bare := _bare_call(text, names)) is not None:
        return None, [bare]
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in CALL.finditer(text):
        try:
            call = json.loads(match.group(1))
            name = call["name"]
            arguments = call.get("arguments", {})
        except (ValueError, KeyError, TypeError):
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(_call(name, arguments))
    kept.append(text[last:])
    content = "".join(kept).strip()
    return (content or None), calls


def _required_names(tools: list[dict[str, Any]], tool_choice: Any) -> list[str] | None:
    """The functions the answer must call one of, or None when the model may answer in text."""
    names = [t["function"]["name"] for t in tools]
    if tool_choice == "required":
        return names
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        wanted = (tool_choice.get("function") or {}).get("name")
        if wanted not in names:
            raise InvalidRequest(f"tool_choice names `{wanted}`, which is not among the tools", param="tool_choice")
        return [wanted]
    return None


@functools.lru_cache(maxsize=32)
def _compiled(schema: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    # The schema's grammar describes the JSON; the model writes it between the tags its template taught it.
    call = re.sub(r"^root ::=", "call ::=", json_schema_to_gbnf(schema), count=1, flags=re.MULTILINE)
    return LlamaGrammar.from_string(f'root ::= "{OPEN}\\n" call "\\n</tool_call>"\n{call}', verbose=False)


def call_grammar(tools: list[dict[str, Any]], tool_choice: Any) -> Any | None:
    """A grammar that makes the answer one call of a required tool, its arguments valid against the
    tool's schema; None when the model may answer in text."""
    names = _required_names(tools, tool_choice)
    if names is None:
        return None
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    choices = [{"type": "object", "properties": {"name": {"const": name},
                "arguments": by_name[name].get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"]} for name in names]  # fmt: skip
    schema = choices[0] if len(choices) == 1 else {"anyOf": choices}
    try:
        return _compiled(json.dumps(schema, sort_keys=True))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InvalidRequest(f"The local model cannot constrain a call to these tools' schemas: {exc}",
                             param="tools") from None  # fmt: skip


def tool_names(passthrough: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(t["function"].get("name")) for t in offered_tools(passthrough))


def answered(content: str, finish: str, names: frozenset[str]) -> tuple[str | None, dict[str, Any], str]:
    """A finished local answer to a request that offered tools: (text, message extras, finish reason)."""
    text, calls = parse_calls(content, names)
    if not calls:
        return content, {}, finish
    return text, {"tool_calls": calls}, "tool_calls"


async def with_tool_calls(deltas: AsyncIterator[StreamDelta], names: frozenset[str]) -> AsyncIterator[StreamDelta]:
    """A local stream to a request that offered tools: text streams live until a `<tool_call>` may be
    starting; what follows is held until the answer ends, then sent as `tool_calls` (a call streams as
    one piece, as its arguments are only valid JSON once whole)."""
    held = ""
    live, sent = True, False
    async for delta in deltas:
        if delta.finish_reason is None and delta.usage is None:
            if not delta.content:
                yield delta
                continue
            held += delta.content
            if live and not sent and held.lstrip()[:1] in ("{", "`"):
                live = False  # the answer may be one bare call object: hold it until it ends
            if live and held.strip():
                cut = _safe_prefix(held)
                if cut:
                    yield replace(delta, content=held[:cut])
                    held, sent = held[cut:], True
                live = not held  # held back from a `<` on: a call may be starting
            continue
        text, extra, finish = answered(held, delta.finish_reason or "stop", names)
        if text and not extra:
            yield StreamDelta(content=text, model=delta.model)
        elif extra:
            if text:
                yield StreamDelta(content=text, model=delta.model)
            calls = [{"index": i, **call} for i, call in enumerate(extra["tool_calls"])]
            yield StreamDelta(delta_extra={"tool_calls": calls}, model=delta.model)
        held = ""
        yield replace(delta, finish_reason=finish if delta.finish_reason else None)


def _safe_prefix(text: str) -> int:
    """How much of `text` can go out now: everything before a `<` that may open a tool call."""
    at = text.find("<")
    while at != -1:
        rest = text[at:]
        if OPEN.startswith(rest[: len(OPEN)]) or rest.startswith(OPEN):
            return at
        at = text.find("<", at + 1)
    return len(text)
