"""A fault-injecting stand-in cloud: a real OpenAI-compatible HTTP server the tests steer.

Run as `python -m tests.faulty_cloud --port P`. A request that offers `tools` is answered with a call
to the first tool (arguments `{"city": "Paris"}`, streamed in fragments when streaming).
`POST /control` sets how the next requests fail:
    {"mode": "ok" | "error500" | "rate_limit" | "bad_request" | "slow_first_byte" | "hang" | "drop_mid_stream",
     "times": N (then back to ok; omit for "until told otherwise"), "retry_after": S, "delay_s": S,
     "echo": true (answer with the last user message instead of the canned answer),
     "answer": "text" (answer with this text instead),
     "chunk_delay_s": S (pause between streamed chunks; default 0.01)}
`GET /calls` returns how many completion calls arrived, when (server clock), and what each one sent
(messages and headers: what a cloud provider would have seen); `POST /reset` clears all. Answers are
instant, so timing is the server's choice, not a model's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = ["Hello", " from", " the", " stand-in", " cloud."]


class Faults:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mode = "ok"
        self.times: int | None = None
        self.retry_after = 1.0
        self.delay_s = 5.0
        self.echo = False
        self.answer: str | None = None
        self.chunk_delay_s = 0.01
        self.calls: list[float] = []
        self.requests: list[dict[str, Any]] = []

    def next_mode(self) -> str:
        self.calls.append(time.monotonic())
        mode = self.mode
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.mode, self.times = "ok", None
        return mode


faults = Faults()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, usage: dict | None = None, logprobs: Any = None
) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-faulty",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}],
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


USAGE = {"prompt_tokens": 7, "completion_tokens": len(ANSWER), "total_tokens": 7 + len(ANSWER)}


def _answer(body: dict[str, Any]) -> list[str]:
    if faults.answer is not None:
        return [faults.answer[i : i + 5] for i in range(0, len(faults.answer), 5)] or [""]
    if not faults.echo:
        return ANSWER
    users = [m for m in body.get("messages", []) if m.get("role") == "user"] or [{"content": body.get("prompt", "")}]
    text = str(users[-1].get("content") or "")
    return [text[i : i + 5] for i in range(0, len(text), 5)] or [""]  # small pieces: placeholders get split


def _logprobs(pieces: list[str]) -> dict[str, Any]:
    """OpenAI's chat logprobs for the answer's pieces (as if each were one token), as a real provider sends."""
    return {
        "content": [
            {"token": p, "logprob": -0.25 * (i + 1), "bytes": list(p.encode()), "top_logprobs": []}
            for i, p in enumerate(pieces)
        ]
    }


async def completions(request: Request) -> Response:
    body = await request.json()
    faults.requests.append(
        {"messages": body.get("messages"), "prompt": body.get("prompt"), "headers": dict(request.headers)}
    )
    model = body.get("model", "faulty")
    mode = faults.next_mode()
    if mode == "error500":
        return _error(500, "injected internal error")
    if mode == "rate_limit":
        return _error(429, "injected rate limit", {"Retry-After": f"{faults.retry_after:g}"})
    if mode == "bad_request":
        return _error(400, "injected bad request")
    if mode == "hang":
        await asyncio.sleep(3600)
    if mode == "slow_first_byte":
        await asyncio.sleep(faults.delay_s)
    answer = _answer(body)
    if body.get("tools") and body.get("tool_choice") != "none":
        return _tool_call(model, body["tools"][0]["function"]["name"], bool(body.get("stream")))
    logprobs = bool(body.get("logprobs"))
    if body.get("stream"):
        stream = _stream(model, answer, mode == "drop_mid_stream", logprobs)
        return StreamingResponse(stream, media_type="text/event-stream")
    message = {"role": "assistant", "content": "".join(answer)}
    return JSONResponse(
        {
            "id": "chatcmpl-faulty",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "stop",
                    "logprobs": _logprobs(answer) if logprobs else None,
                }
            ],
            "usage": USAGE,
        }
    )


TOOL_ARGUMENTS = '{"city": "Paris"}'


def _tool_call(model: str, name: str, stream: bool) -> Response:
    """A request that offers tools gets a call to the first one, as a provider's model would make."""
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        created = int(time.time())
        body = {"id": "chatcmpl-faulty", "object": "chat.completion", "created": created, "model": model}
        return JSONResponse({**body, "choices": [choice], "usage": USAGE})

    async def chunks():
        first = {"index": 0, **call, "function": {"name": name, "arguments": ""}}
        yield _chunk(model, {"role": "assistant", "content": None, "tool_calls": [first]})
        for piece in (TOOL_ARGUMENTS[:8], TOOL_ARGUMENTS[8:]):  # arguments arrive in fragments
            yield _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield _chunk(model, {}, finish="tool_calls")
        yield _chunk(model, {}, usage=USAGE)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def _stream(model: str, answer: list[str], drop: bool, logprobs: bool = False):
    yield _chunk(model, {"role": "assistant", "content": ""})
    for i, piece in enumerate(answer):
        if drop and i == 2:
            raise ConnectionResetError("injected: connection dropped mid-stream")
        yield _chunk(model, {"content": piece}, logprobs=_logprobs([piece]) if logprobs else None)
        await asyncio.sleep(faults.chunk_delay_s)
    yield _chunk(model, {}, finish="stop")
    yield _chunk(model, {}, usage=USAGE)
    yield b"data: [DONE]\n\n"


async def text_completions(request: Request) -> Response:
    """Legacy text completions: the canned answer (or the echoed prompt) as one text choice."""
    body = await request.json()
    faults.requests.append({"messages": None, "prompt": body.get("prompt"), "headers": dict(request.headers)})
    text = "".join(_answer(body))
    created = int(time.time())
    if body.get("stream"):

        async def chunks():
            for piece in (text, ""):
                finish = None if piece else "stop"
                choice = {"index": 0, "text": piece, "finish_reason": finish, "logprobs": None}
                head = {"id": "cmpl-faulty", "object": "text_completion", "created": created}
                data = {**head, "model": body.get("model"), "choices": [choice]}
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")
    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
    return JSONResponse({"id": "cmpl-faulty", "object": "text_completion", "created": created,
                         "model": body.get("model"), "choices": [choice], "usage": USAGE})  # fmt: skip


async def embeddings(request: Request) -> Response:
    """Deterministic 4-dimensional vectors (text length, word count, 1, 0) with usage, as a provider answers."""
    body = await request.json()
    if faults.next_mode() == "error500":  # embedding calls take the same injected faults
        return _error(500, "injected internal error")
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), float(len(t.split())), 1.0, 0.0]}
            for i, t in enumerate(texts)]  # fmt: skip
    tokens = sum(len(t.split()) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse({"object": "list", "data": data, "model": body.get("model"), "usage": usage})


async def control(request: Request) -> Response:
    body = await request.json()
    faults.mode = body.get("mode", "ok")
    faults.times = body.get("times")
    faults.retry_after = float(body.get("retry_after", faults.retry_after))
    faults.delay_s = float(body.get("delay_s", faults.delay_s))
    faults.echo = bool(body.get("echo", faults.echo))
    faults.answer = body.get("answer", faults.answer)
    faults.chunk_delay_s = float(body.get("chunk_delay_s", faults.chunk_delay_s))
    return JSONResponse({"mode": faults.mode})


async def calls(request: Request) -> Response:
    return JSONResponse({"count": len(faults.calls), "at": faults.calls, "requests": faults.requests})


async def reset(request: Request) -> Response:
    faults.reset()
    return JSONResponse({"ok": True})


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "faulty", "object": "model", "owned_by": "tests"}]})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/completions", text_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models),
        Route("/control", control, methods=["POST"]),
        Route("/calls", calls),
        Route("/reset", reset, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
