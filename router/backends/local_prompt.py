"""A request turned into what the in-process model runs: the prompt's tokens (rendered through the
model's chat template, with its tools when offered) and the sampling settings (limits, stops, a grammar
for JSON output or a required tool call). Both engines (one sequence at a time, and batched) take it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from router.backends.chat_templates import ChatPrompt
from router.backends.json_grammar import grammar_for
from router.backends.local_tools import call_grammar, for_prompt, offered_tools
from router.config import LlamaCppModel
from router.errors import InvalidRequest
from router.types import RequestContext


def _rendered(
    ctx: RequestContext, render: Callable[..., ChatPrompt], system_prompt: str | None
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(prompt text, stop strings, the tools shown to the model)."""
    if ctx.kind != "chat":
        return ctx.prompt or "", [], []
    messages, prefill = _without_prefill(ctx)
    answer_start = prefill + ctx.answer_start
    if system_prompt and not any(m.get("role") in ("system", "developer") for m in messages):
        messages = ({"role": "system", "content": system_prompt}, *messages)
    offered = offered_tools(ctx.passthrough)
    if not offered:
        rendered = render(messages)
        return rendered.text + answer_start, list(rendered.stop), []
    shown, tools = for_prompt(messages, offered)
    rendered = render(shown, tools or None)
    return rendered.text + answer_start, list(rendered.stop), tools


def _without_prefill(ctx: RequestContext) -> tuple[tuple[Mapping[str, Any], ...], str]:
    """(the messages to render, the text the answer continues: the request's prefill, if any)."""
    prefill = ctx.prefill()
    return (tuple(ctx.messages), "") if prefill is None else (tuple(ctx.messages[:-1]), prefill)


def prepared(
    ctx: RequestContext, max_tokens: int | None, spec: LlamaCppModel, tokenizer: Any,
    render: Callable[..., ChatPrompt], system_prompt: str | None,
) -> tuple[list[int], dict[str, Any]]:  # fmt: skip
    """(prompt tokens, generation settings) for one request; a 400 for what the model cannot do."""
    text, stops, tools = _rendered(ctx, render, system_prompt)
    tokens = tokenizer.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    room = spec.n_ctx - len(tokens)
    if room < 1:
        raise InvalidRequest(
            f"This model's maximum context length is {spec.n_ctx} tokens; the prompt has {len(tokens)}.",
            param="messages" if ctx.kind == "chat" else "prompt",
            code="context_length_exceeded",
        )
    params = ctx.params
    if params.get("n", 1) != 1:
        raise InvalidRequest("The local model answers with one choice; n must be 1.", param="n")
    user_stop = params.get("stop")
    stops += [user_stop] if isinstance(user_stop, str) else list(user_stop or [])
    kwargs: dict[str, Any] = {
        "max_tokens": min(max_tokens or spec.default_max_tokens, room),
        "temperature": params.get("temperature", spec.default_temperature),
        "top_p": params.get("top_p", 1.0),
        "top_k": params.get("top_k", 40),
        "stop": stops,
        "seed": params.get("seed"),
        "presence_penalty": params.get("presence_penalty", 0.0),
        "frequency_penalty": params.get("frequency_penalty", 0.0),
    }
    grammar = call_grammar(tools, ctx.passthrough.get("tool_choice")) if tools else None
    grammar = grammar or grammar_for(ctx.passthrough.get("response_format"))
    if grammar is not None:
        kwargs["grammar"] = grammar
    if params.get("logit_bias"):
        try:
            kwargs["logit_bias"] = {int(k): float(v) for k, v in params["logit_bias"].items()}
        except ValueError as exc:
            raise InvalidRequest("logit_bias keys must be token ids", param="logit_bias") from exc
    return tokens, kwargs
