"""Shape answers as OpenAI's wire format: completion objects, SSE chunks, and the x-router-* headers."""

from __future__ import annotations

import json
import time
from typing import Any

from router.api.errors import sse_error_event
from router.errors import RouterError
from router.types import Completion, RequestContext, Served, StreamDelta

DONE = b"data: [DONE]\n\n"


def router_headers(served: Served, request_id: str) -> dict[str, str]:
    headers = {
        "x-request-id": request_id,
        "x-router-route": served.route,
        "x-router-model": served.model,
        "x-router-reason": served.decision.reason,
        "x-router-cache": served.cache,
    }
    if (intent := served.decision.intent) is not None:
        # Header values must be latin-1 and one line: the example is quoted as JSON (ASCII, escaped).
        example = json.dumps(intent.example[:120], ensure_ascii=True)
        headers["x-router-intent"] = intent.intent or ""
        headers["x-router-reason"] += f"; intent={intent.intent}; similarity={intent.similarity:.4f}; example={example}"
    if served.decision.needs:
        headers["x-router-needs"] = ",".join(served.decision.needs)
    if served.cascade is not None:
        headers["x-router-cascade"] = served.cascade
        if served.confidence is not None:
            headers["x-router-confidence"] = f"{served.confidence:.4f}"
    if served.similarity is not None and served.cache == "hit-semantic":
        headers["x-router-cache-similarity"] = f"{served.similarity:.4f}"
    if "escalation" in served.decision.scores:
        headers["x-router-score"] = f"{served.decision.scores['escalation']:.4f}"
    if served.cost_usd is not None:
        headers["x-router-cost-usd"] = f"{served.cost_usd:.8f}"
        headers["x-router-saved-usd"] = f"{served.saved_usd or 0.0:.8f}"
    if served.fallback:
        headers["x-router-fallback"] = served.fallback
        if served.fallback_reason:
            # Header values must be latin-1 and one line; the full story is in the log line.
            headers["x-router-fallback-reason"] = (
                served.fallback_reason.encode("latin-1", "replace").decode("latin-1")[:300].replace("\n", " ")
            )
    return headers


def completion_body(ctx: RequestContext, completion: Completion) -> dict[str, Any]:
    created = int(time.time())
    if ctx.kind == "chat":
        message = {"role": "assistant", "content": completion.content, **completion.message_extra}
        return {
            "id": f"chatcmpl-{ctx.request_id}",
            "object": "chat.completion",
            "created": created,
            "model": completion.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": completion.logprobs,
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": completion.usage.as_openai(),
        }
    return {
        "id": f"cmpl-{ctx.request_id}",
        "object": "text_completion",
        "created": created,
        "model": completion.model,
        "choices": [
            {
                "index": 0,
                "text": completion.content or "",
                "logprobs": completion.logprobs,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": completion.usage.as_openai(),
    }


class ChunkWriter:
    """Turns `StreamDelta`s into SSE `data:` lines for one streamed response."""

    def __init__(self, ctx: RequestContext, model: str) -> None:
        self._ctx = ctx
        self._model = model
        self._created = int(time.time())
        self._chat = ctx.kind == "chat"
        self._id = f"{'chatcmpl' if self._chat else 'cmpl'}-{ctx.request_id}"
        self._object = "chat.completion.chunk" if self._chat else "text_completion"
        self._started = False

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": self._object,
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def start(self) -> bytes:
        return b""

    def error(self, exc: RouterError) -> bytes:
        return sse_error_event(exc)

    def end(self) -> bytes:
        return DONE

    def delta(self, delta: StreamDelta) -> bytes:
        if delta.model:
            self._model = delta.model
        out = b""
        if delta.content is not None or delta.delta_extra or delta.finish_reason or delta.logprobs:
            if self._chat:
                body: dict[str, Any] = {}
                if not self._started:
                    body["role"] = "assistant"  # OpenAI names the role in the first chunk only
                if delta.content is not None or not self._started:
                    body["content"] = delta.content or ""
                body.update(delta.delta_extra)
                choice = {"index": 0, "delta": body, "logprobs": delta.logprobs, "finish_reason": delta.finish_reason}
            else:
                choice = {
                    "index": 0,
                    "text": delta.content or "",
                    "logprobs": delta.logprobs,
                    "finish_reason": delta.finish_reason,
                }
            self._started = True
            out += self._event([choice])
        if delta.usage is not None and self._ctx.include_usage:
            out += self._event([], delta.usage.as_openai())
        return out
