"""A stand-in for the clouds coding agents talk to: a real HTTP server speaking Anthropic's Messages API
and OpenAI's Responses and Chat Completions APIs, with a scripted model that records what reached it.

Run as `python -m tests.agent_cloud --port P`. The model, whichever API asks:
- answers a turn that carries a tool's result with "The file holds: <the result>";
- asks the client to read a file when the prompt says "read the file PATH" and the client offers a tool
  to do it (Claude Code's `Read`, Codex's `exec_command` or `shell`, any tool named `read_file`);
- otherwise answers "4" to a question about 2+2 and a greeting to anything else.
Messages answers begin with a thinking block signed `sig-stand-in-N` when the request enables thinking;
Responses answers begin with a reasoning item with `encrypted_content` when the request includes it.
Prompt caching is simulated: a request with `cache_control` or `prompt_cache_key` reports its input as
read from the cache. `GET /calls` returns every request (path, headers, body); `POST /reset` clears them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

READ_FILE = re.compile(r"read the file (\S+?)[.,;]?(?:\s|$)", re.IGNORECASE)
CACHED_TOKENS = 1024
requests: list[dict[str, Any]] = []
serial = itertools.count(1)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for part in content or []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "tool_result":
            out += _texts(part.get("content"))
    return out


def _plan(prompt: str, tool_result: str | None, tools: set[str]) -> tuple[str, Any] | tuple[str, str]:
    """("tool", (name, input)) to ask for a tool, or ("text", answer)."""
    if tool_result is not None:
        return "text", f"The file holds: {tool_result.strip()}"
    wanted = READ_FILE.search(prompt)
    if wanted:
        path = wanted.group(1)
        if "Read" in tools:
            return "tool", ("Read", {"file_path": path})
        if "exec_command" in tools:
            return "tool", ("exec_command", {"cmd": f"cat {path}"})
        if "shell" in tools:
            return "tool", ("shell", {"command": ["cat", path]})
        if "read_file" in tools:
            return "tool", ("read_file", {"path": path})
    return "text", "4" if "2+2" in prompt.replace(" ", "") else "Hello from the agent stand-in."


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _record(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    entry = {"path": request.url.path, "query": request.url.query, "headers": dict(request.headers), "body": body}
    requests.append(entry)
    return entry


def _has_cache_control(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(v) for v in value)
    return False


# -- Anthropic Messages -----------------------------------------------------------------------------------


def _messages_turn(body: dict[str, Any]) -> tuple[str, str | None]:
    """(the last user text, the last tool result's text if the last user turn carries one)."""
    last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
    content = last.get("content")
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] if isinstance(
        content, list
    ) else []  # fmt: skip
    if results:
        return "", "\n".join(_texts(results[-1].get("content")))
    prompts = [t for m in body.get("messages", []) if m.get("role") == "user" for t in _texts(m.get("content"))]
    return (prompts[-1] if prompts else ""), None


def _message_blocks(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    prompt, result = _messages_turn(body)
    kind, what = _plan(prompt, result, {t.get("name") for t in body.get("tools") or []})
    blocks: list[dict[str, Any]] = []
    if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        blocks.append({"type": "thinking", "thinking": "Working it out.", "signature": f"sig-stand-in-{next(serial)}"})
    if kind == "tool":
        name, arguments = what
        blocks.append({"type": "tool_use", "id": f"toolu_{next(serial)}", "name": name, "input": arguments})
        return blocks, "tool_use"
    blocks.append({"type": "text", "text": what})
    return blocks, "end_turn"


def _messages_usage(body: dict[str, Any]) -> dict[str, int]:
    cached = CACHED_TOKENS if _has_cache_control(body) else 0
    size = len(json.dumps(body.get("messages", []))) // 4
    return {"input_tokens": size, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
            "output_tokens": 12}  # fmt: skip


def _message_events(message: dict[str, Any]) -> Iterator[bytes]:
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    yield _sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        opening = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                   "text": {"type": "text", "text": ""},
                   "tool_use": {**block, "input": {}}}[kind]  # fmt: skip
        yield _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        if kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                      {"type": "signature_delta", "signature": block["signature"]}]  # fmt: skip
        elif kind == "text":
            deltas = [{"type": "text_delta", "text": piece} for piece in re.findall(r"\S+\s*|\s+", block["text"])]
        else:
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        for delta in deltas:
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                 "usage": {"output_tokens": message["usage"]["output_tokens"]}})  # fmt: skip
    yield _sse("message_stop", {"type": "message_stop"})


async def messages(request: Request) -> Response:
    body = await request.json()
    entry = _record(request, body)
    blocks, stop = _message_blocks(body)
    message = {"id": f"msg_stand_in_{next(serial)}", "type": "message", "role": "assistant",
               "model": body.get("model"), "content": blocks, "stop_reason": stop, "stop_sequence": None,
               "usage": _messages_usage(body)}  # fmt: skip
    entry["answer"] = message
    if body.get("stream"):
        return StreamingResponse(_message_events(message), media_type="text/event-stream")
    return JSONResponse(message)


async def count_tokens(request: Request) -> Response:
    body = await request.json()
    _record(request, body)
    return JSONResponse({"input_tokens": _messages_usage(body)["input_tokens"]})


# -- OpenAI Responses -------------------------------------------------------------------------------------


def _responses_turn(body: dict[str, Any]) -> tuple[str, str | None]:
    items = body.get("input")
    if isinstance(items, str):
        return items, None
    items = items or []
    if items and items[-1].get("type") == "function_call_output":
        output = items[-1].get("output")
        return "", output if isinstance(output, str) else "\n".join(_texts(output))
    prompts = [t for item in items if item.get("role") == "user" for t in _texts(item.get("content"))]
    return (prompts[-1] if prompts else ""), None


def _response(body: dict[str, Any], output: list[dict[str, Any]], status: str) -> dict[str, Any]:
    cached = CACHED_TOKENS if body.get("prompt_cache_key") else 0
    size = len(json.dumps(body.get("input", ""))) // 4
    usage = {"input_tokens": size + cached, "input_tokens_details": {"cached_tokens": cached},
             "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4},
             "total_tokens": size + cached + 12}  # fmt: skip
    return {"id": "resp_stand_in", "object": "response", "created_at": 0, "status": status,
            "model": body.get("model"), "output": output, "usage": usage if status == "completed" else None,
            "error": None, "incomplete_details": None}  # fmt: skip


def _output_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    prompt, result = _responses_turn(body)
    kind, what = _plan(prompt, result, {t.get("name") for t in body.get("tools") or []})
    n = next(serial)
    items: list[dict[str, Any]] = []
    if "reasoning.encrypted_content" in (body.get("include") or []):
        items.append({"type": "reasoning", "id": f"rs_{n}", "summary": [], "encrypted_content": f"enc-stand-in-{n}"})
    if kind == "tool":
        name, arguments = what
        items.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name,
                      "arguments": json.dumps(arguments), "status": "completed"})  # fmt: skip
    else:
        items.append({"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": what, "annotations": []}]})  # fmt: skip
    return items


def _response_events(body: dict[str, Any], items: list[dict[str, Any]]) -> Iterator[bytes]:
    seq = itertools.count()

    def event(kind: str, **data: Any) -> bytes:
        return _sse(kind, {"type": kind, "sequence_number": next(seq), **data})

    yield event("response.created", response=_response(body, [], "in_progress"))
    yield event("response.in_progress", response=_response(body, [], "in_progress"))
    for index, item in enumerate(items):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            opened = {**item, "content": [], "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=opened)
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", **at, content_index=0, part=part)
            for piece in re.findall(r"\S+\s*|\s+", text):
                yield event("response.output_text.delta", **at, content_index=0, delta=piece)
            yield event("response.output_text.done", **at, content_index=0, text=text)
            yield event("response.content_part.done", **at, content_index=0, part=item["content"][0])
        elif item["type"] == "function_call":
            opened = {**item, "arguments": "", "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=opened)
            yield event("response.function_call_arguments.delta", **at, delta=item["arguments"])
            yield event("response.function_call_arguments.done", **at, arguments=item["arguments"])
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=_response(body, items, "completed"))


async def responses(request: Request) -> Response:
    body = await request.json()
    entry = _record(request, body)
    items = _output_items(body)
    entry["answer"] = items
    if body.get("stream"):
        return StreamingResponse(_response_events(body, items), media_type="text/event-stream")
    return JSONResponse(_response(body, items, "completed"))


# -- OpenAI Chat Completions ------------------------------------------------------------------------------


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    _record(request, body)
    messages = body.get("messages") or []
    result = messages[-1].get("content") if messages and messages[-1].get("role") == "tool" else None
    prompts = [t for m in messages if m.get("role") == "user" for t in _texts(m.get("content"))]
    tools = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
    kind, what = _plan(prompts[-1] if prompts else "", result, tools)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if kind == "tool":
        name, arguments = what
        message["tool_calls"] = [{"id": f"call_{next(serial)}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(arguments)}}]  # fmt: skip
    else:
        message["content"] = what
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    finish = "tool_calls" if kind == "tool" else "stop"
    answer = {"id": "chatcmpl-stand-in", "object": "chat.completion", "created": 0, "model": body.get("model"),
              "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}  # fmt: skip
    if not body.get("stream"):
        return JSONResponse(answer)

    def chunks() -> Iterator[bytes]:
        base = {"id": "chatcmpl-stand-in", "object": "chat.completion.chunk", "created": 0, "model": body.get("model")}
        calls = [{"index": i, **call} for i, call in enumerate(message.get("tool_calls") or [])]
        delta = {**message, "tool_calls": calls} if calls else message
        for choices, extra in (([{"index": 0, "delta": delta, "finish_reason": None}], {}),
                               ([{"index": 0, "delta": {}, "finish_reason": finish}], {}),
                               ([], {"usage": usage})):  # fmt: skip
            yield f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


# -- control ----------------------------------------------------------------------------------------------


async def calls(request: Request) -> Response:
    return JSONResponse({"requests": requests})


async def reset(request: Request) -> Response:
    requests.clear()
    return JSONResponse({"ok": True})


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "stand-in", "object": "model", "owned_by": "tests"}]})


app = Starlette(
    routes=[
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models),
        Route("/calls", calls),
        Route("/reset", reset, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
