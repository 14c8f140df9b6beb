"""What a request needs from the model that answers it, and which models can give it.

A request is never answered with part of what it asked for silently dropped: one with `tools` gets a
model that calls tools, `response_format` JSON a model that keeps to it, an image part a model that
sees, `logprobs` a model that returns them, an Anthropic prefill a model that continues it. The router
moves such a request along its chain to the first capable model; if the chain has none, the request is
refused with a 400 that names the capability; a cascade escalates only to a cloud model that has them.

A model's capabilities are its config's `capabilities:` or its engine's default: in-process llama.cpp
constrains output with a grammar (json); an OpenAI-compatible server (llama.cpp's, vLLM) does json and
logprobs; a provider through litellm is assumed to do all four, which its own errors correct, but not to
continue a prefill. The in-process model returns the log-probabilities its confidence meter measures
(json and logprobs) and continues a prefill.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.backends.model_files import packaged_model
from router.backends.native_api import native_api_of
from router.config.models import Capability, LiteLLMModel, LlamaCppModel, OpenAICompatibleModel
from router.policy import facts
from router.types import RequestContext

CAPABILITIES: tuple[Capability, ...] = (
    "tools", "json", "vision", "audio", "files", "logprobs", "prefill", "messages", "responses"
)  # fmt: skip
NATIVE_APIS = frozenset({"messages", "responses"})
"""Taking a request whole in a client's API: Anthropic's Messages, OpenAI's Responses (a request holding
what only that API carries, such as a document block, needs it)."""
ENGINE_DEFAULTS: dict[type, frozenset[str]] = {
    LlamaCppModel: frozenset({"json", "logprobs", "prefill"}),
    OpenAICompatibleModel: frozenset({"json", "logprobs"}),
    LiteLLMModel: frozenset(CAPABILITIES) - NATIVE_APIS - {"prefill"},
}
"""Prefill is not assumed of a provider: OpenAI's models answer a last assistant message anew (which would
hand an Anthropic client an answer that does not follow its prefill). Anthropic's take it as part of
Messages requests taken whole; DeepSeek and Mistral take it when configured (`capabilities:`)."""


def model_capabilities(spec: LlamaCppModel | OpenAICompatibleModel | LiteLLMModel) -> frozenset[str]:
    if spec.capabilities is not None:
        return frozenset(spec.capabilities)
    defaults = ENGINE_DEFAULTS[type(spec)]
    if isinstance(spec, LlamaCppModel) and _renders_tools(spec):
        return defaults | {"tools"}
    if isinstance(spec, LiteLLMModel) and (api := native_api_of(spec.model, spec.api_base)) is not None:
        return defaults | {api} | ({"prefill"} if api == "messages" else set())
    return defaults


def _renders_tools(spec: LlamaCppModel) -> bool:
    """A packaged model whose own template renders tools, used with that template."""
    if spec.model_path is not None or spec.chat_format not in (None, "gguf"):
        return False
    return packaged_model(spec.package).tool_calls


def _uses_tools(ctx: RequestContext) -> bool:
    # A conversation that already holds tool calls and results needs a model that reads them too.
    return facts.tools(ctx) or any(m.get("role") in ("tool", "function") or m.get("tool_calls") for m in ctx.messages)


def _wants_json(passthrough: Mapping[str, Any]) -> bool:
    response_format = passthrough.get("response_format")
    return isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema")


def required_capabilities(f: facts.Facts) -> tuple[str, ...]:
    """The capabilities a request needs, in `CAPABILITIES` order (computed once per decision)."""
    ctx = f.request

    def compute() -> tuple[str, ...]:
        parts = facts.part_types(ctx)
        needs = {
            "tools": _uses_tools(ctx),
            "json": _wants_json(ctx.passthrough),
            "vision": not facts.IMAGE_PART_TYPES.isdisjoint(parts),
            "audio": "input_audio" in parts,
            "files": "file" in parts,
            "logprobs": bool(ctx.passthrough.get("logprobs")) or bool(ctx.passthrough.get("top_logprobs")),
            "prefill": ctx.prefill() is not None,
            "messages": ctx.native is not None and ctx.native.api == "messages" and bool(ctx.native.requires),
            "responses": ctx.native is not None and ctx.native.api == "responses" and bool(ctx.native.requires),
        }
        return tuple(name for name in CAPABILITIES if needs[name])

    return f.derived("capabilities", compute)
