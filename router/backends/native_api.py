"""Same-family pass-through: a request in Anthropic's Messages or OpenAI's Responses format, forwarded
whole to a provider that speaks that API, and its answer returned as the provider sent it.

Translating an agent's request into chat-completions shape and back loses what makes agents work and
what makes them cheap: thinking blocks and their signatures (the provider refuses the next turn without
them), `cache_control` breakpoints and `prompt_cache_key`, encrypted reasoning items, server tools,
beta features. So when the route lands on a model of the client's own API, the body goes as the client
wrote it, with only `model` (and a rule's token cap) changed, and the answer's bytes come back: a
finished body as JSON, a stream event by event as they arrive. The gateway reads along only what it
needs for itself (the text, the stop reason and the usage, cached tokens included, for the ledger,
the cache of decisions and the logs).

Why not litellm's native entry points (`litellm.anthropic.messages.acreate`, `litellm.aresponses`):
in litellm 1.110 the first one's streaming imports litellm's proxy server (orjson, soundfile, backoff
and more), and the second rewrites response ids and drops fields it does not know (`client_metadata`).
A byte-for-byte forward is what "only the model name changed" means.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from router.backends.openai_http import error_for_status
from router.errors import RouterError, UpstreamError, UpstreamTimeout
from router.types import Completion, NativeAPI, RequestContext, StreamDelta, Usage

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASES = {"messages": "https://api.anthropic.com", "responses": "https://api.openai.com/v1"}
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "pause_turn": "stop", "refusal": "content_filter"}  # fmt: skip
TOKEN_LIMIT_FIELD = {"messages": "max_tokens", "responses": "max_output_tokens"}
OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "codex", "chatgpt-")


def native_api_of(litellm_model: str, api_base: str | None) -> NativeAPI | None:
    """The client API a litellm model takes whole by default: Anthropic's models take Messages; OpenAI's
    own take Responses, but not an OpenAI-compatible server at another `api_base` (most speak only chat
    completions; list `responses` in its `capabilities:` when one does)."""
    provider, _, name = litellm_model.partition("/")
    if not name:
        provider, name = "", provider
    if provider == "anthropic" or (not provider and name.startswith("claude")):
        return "messages"
    if api_base is None and (provider == "openai" or (not provider and name.startswith(OPENAI_PREFIXES))):
        return "responses"
    return None


def endpoint(api: NativeAPI, api_base: str | None) -> str:
    """The provider's URL for `api`, from a litellm-style `api_base` (Anthropic's without `/v1`)."""
    base = (api_base or DEFAULT_BASES[api]).rstrip("/")
    if api == "messages":
        if base.endswith("/v1/messages"):
            return base
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
    return base if base.endswith("/responses") else f"{base}/responses"


@dataclass(frozen=True, slots=True)
class Summary:
    """What the gateway reads of a native answer for itself."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


def _messages_usage(raw: Mapping[str, Any]) -> Usage:
    """Anthropic's usage (input excludes cache reads and writes) as the gateway's (prompt includes them)."""
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    prompt = int(raw.get("input_tokens") or 0) + read + written
    return Usage(prompt, int(raw.get("output_tokens") or 0), cached_tokens=read, cache_write_tokens=written)


def _responses_usage(raw: Mapping[str, Any]) -> Usage:
    cached = int((raw.get("input_tokens_details") or {}).get("cached_tokens") or 0)
    return Usage(int(raw.get("input_tokens") or 0), int(raw.get("output_tokens") or 0), cached_tokens=cached)


def summarize(api: NativeAPI, body: Mapping[str, Any]) -> Summary:
    """A finished Messages body or Responses `response` object, summarized."""
    if api == "messages":
        blocks = [b for b in body.get("content") or [] if isinstance(b, Mapping)]
        calls = tuple({"id": b.get("id"), "type": "function",
                       "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}}
                      for b in blocks if b.get("type") == "tool_use")  # fmt: skip
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        finish = STOP_REASONS.get(str(body.get("stop_reason")), "stop")
        return Summary(text, finish, _messages_usage(body.get("usage") or {}), calls)
    items = [i for i in body.get("output") or [] if isinstance(i, Mapping)]
    text = "".join(str(part.get("text", "")) for item in items if item.get("type") == "message"
                   for part in item.get("content") or [] if isinstance(part, Mapping))  # fmt: skip
    calls = tuple({"id": i.get("call_id"), "type": "function",
                   "function": {"name": i.get("name"), "arguments": i.get("arguments") or ""}}
                  for i in items if i.get("type") == "function_call")  # fmt: skip
    cut = (body.get("incomplete_details") or {}).get("reason") == "max_output_tokens"
    finish = "length" if cut else ("tool_calls" if calls else "stop")
    return Summary(text, finish, _responses_usage(body.get("usage") or {}), calls)


class EventReader:
    """Reads a provider's server-sent events as they arrive: whole events out, with what each says."""

    def __init__(self, api: NativeAPI) -> None:
        self._api = api
        self._buffer = b""
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> list[StreamDelta]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            if raw.strip():
                out.append(self._delta(raw + b"\n\n"))
        return out

    def _delta(self, raw: bytes) -> StreamDelta:
        data = b"".join(line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:"))
        try:
            event = json.loads(data) if data else {}
        except ValueError:
            event = {}
        if not isinstance(event, dict):
            event = {}
        if event.get("type") == "error":
            error = event.get("error") if isinstance(event.get("error"), Mapping) else event
            raise UpstreamError(f"the provider failed mid-stream: {error.get('message') or error}")
        reader = self._messages_event if self._api == "messages" else self._responses_event
        return StreamDelta(native=raw, **reader(event))

    def _messages_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        kind = event.get("type")
        if kind == "message_start":
            self._usage = dict((event.get("message") or {}).get("usage") or {})
            return {"model": (event.get("message") or {}).get("model")}
        if kind == "content_block_delta" and (event.get("delta") or {}).get("type") == "text_delta":
            return {"content": event["delta"].get("text") or None}
        if kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            return {"finish_reason": STOP_REASONS.get(str(reason), "stop"), "usage": _messages_usage(self._usage)}
        return {}

    @staticmethod
    def _responses_event(event: Mapping[str, Any]) -> dict[str, Any]:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return {"content": event.get("delta") or None}
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response") or {}
            summary = summarize("responses", response)
            return {"finish_reason": summary.finish_reason, "usage": summary.usage, "model": response.get("model")}
        return {}


class NativeForwarder:
    """Forwards requests of one API to one provider endpoint, over one pooled HTTP client."""

    def __init__(self, name: str, api: NativeAPI, model: str, api_base: str | None, api_key: str | None,
                 timeout_s: float, connect_s: float) -> None:  # fmt: skip
        self.name = name
        self.api = api
        self._model = model.partition("/")[2] or model
        self._url = endpoint(api, api_base)
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_s)
        self._session: aiohttp.ClientSession | None = None

    def speaks(self, ctx: RequestContext) -> bool:
        return ctx.native is not None and ctx.native.api == self.api

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, ctx: RequestContext) -> dict[str, str]:
        assert ctx.native is not None
        headers = {"content-type": "application/json", **ctx.native.headers, **ctx.upstream_headers}
        if self.api == "messages":
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
            if self._key:
                headers["x-api-key"] = self._key
        elif self._key:
            headers["authorization"] = f"Bearer {self._key}"
        return headers

    def _body(self, ctx: RequestContext, max_tokens: int | None) -> bytes:
        assert ctx.native is not None
        body = {**ctx.native.body, "model": self._model}
        limit = TOKEN_LIMIT_FIELD[self.api]
        if max_tokens is not None and (body.get(limit) is None or max_tokens < body[limit]):
            body[limit] = max_tokens  # a rule's cap; never raised above what the client asked
        return json.dumps(body).encode()

    async def _post(self, ctx: RequestContext, max_tokens: int | None) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            url = f"{self._url}?{ctx.native.query}" if ctx.native is not None and ctx.native.query else self._url
            response = await self._session.post(url, data=self._body(ctx, max_tokens), headers=self._headers(ctx))
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"cannot reach {self.name}: {exc}", code="upstream_unreachable") from exc
        if response.status >= 400:
            raw = await response.read()
            response.release()
            raise error_for_status(self.name, response.status, raw, response.headers)
        return response

    async def complete(self, ctx: RequestContext, max_tokens: int | None) -> Completion:
        response = await self._post(ctx, max_tokens)
        try:
            body = json.loads(await response.read())
        except (ValueError, aiohttp.ClientError) as exc:
            raise UpstreamError(f"{self.name} sent an answer that is not JSON") from exc
        finally:
            response.release()
        summary = summarize(self.api, body)
        extra = {"tool_calls": list(summary.tool_calls)} if summary.tool_calls else {}
        return Completion(summary.text or None, summary.finish_reason, summary.usage or Usage(),
                          str(body.get("model") or self.name), message_extra=extra, native=body)  # fmt: skip

    async def stream(self, ctx: RequestContext, max_tokens: int | None) -> AsyncIterator[StreamDelta]:
        response = await self._post(ctx, max_tokens)
        reader = EventReader(self.api)
        try:
            async for chunk in response.content.iter_any():
                for delta in reader.feed(chunk):
                    yield delta
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name} stopped sending before the stream ended") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self.name} broke off the stream: {exc!r}") from exc
        except RouterError:
            raise
        finally:
            response.release()
