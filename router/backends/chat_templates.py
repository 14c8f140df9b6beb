"""Render chat messages into a prompt for a GGUF model.

We render prompts ourselves rather than through `create_chat_completion` for two reasons: we need the
exact prompt token count for usage and context checks before generating, and llama-cpp-python's stock
`gemma` format drops system messages, which clients rely on. `gguf` uses the Jinja chat template stored
in the model file, for models that have one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.types import content_text

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    text: str
    stop: tuple[str, ...]


def plain(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as chat templates read it: `content` one string (text parts joined; none: empty), since they
    concatenate it. Only text reaches a text model; the router sends image, audio and file parts to a model
    that takes them (capabilities), so none is dropped here."""
    content = message.get("content")
    return dict(message) if isinstance(content, str) else {**message, "content": content_text(content)}


def _system_and_turns(messages: Messages) -> tuple[str, list[tuple[str, str]]]:
    system = "\n\n".join(
        content_text(m.get("content")).strip() for m in messages if m.get("role") in ("system", "developer")
    )
    turns = [
        (str(m.get("role")), content_text(m.get("content")).strip())
        for m in messages
        if m.get("role") not in ("system", "developer")
    ]
    return system, turns


def _gemma(messages: Messages) -> ChatPrompt:
    """Gemma 3's template: the system prompt opens the first user turn; the assistant is `model`."""
    system, turns = _system_and_turns(messages)
    parts: list[str] = []
    for i, (role, text) in enumerate(turns):
        gemma_role = "model" if role == "assistant" else "user"
        if i == 0 and system:
            text = f"{system}\n\n{text}" if gemma_role == "user" else text
            if gemma_role != "user":
                parts.append(f"<start_of_turn>user\n{system}<end_of_turn>\n")
        parts.append(f"<start_of_turn>{gemma_role}\n{text}<end_of_turn>\n")
    if not turns and system:
        parts.append(f"<start_of_turn>user\n{system}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return ChatPrompt("".join(parts), ("<end_of_turn>",))


def _chatml(messages: Messages) -> ChatPrompt:
    parts = [f"<|im_start|>{m.get('role')}\n{content_text(m.get('content')).strip()}<|im_end|>\n" for m in messages]
    parts.append("<|im_start|>assistant\n")
    return ChatPrompt("".join(parts), ("<|im_end|>",))


def _llama3(messages: Messages) -> ChatPrompt:
    parts = [
        f"<|start_header_id|>{m.get('role')}<|end_header_id|>\n\n{content_text(m.get('content')).strip()}<|eot_id|>"
        for m in messages
    ]
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return ChatPrompt("".join(parts), ("<|eot_id|>",))


FORMATS: dict[str, Callable[[Messages], ChatPrompt]] = {
    "gemma": _gemma,
    "chatml": _chatml,
    "llama-3": _llama3,
}
SUPPORTED = (*FORMATS, "gguf")


def gguf_template_renderer(metadata: Mapping[str, str], eos: str, bos: str) -> Callable[..., ChatPrompt]:
    """A renderer for the Jinja chat template embedded in a GGUF file's metadata."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("chat_format `gguf` needs a model whose metadata has tokenizer.chat_template")
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: Messages, tools: Sequence[Mapping[str, Any]] | None = None) -> ChatPrompt:
        result = formatter(messages=[plain(m) for m in messages], tools=list(tools) if tools else None)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        # An empty stop string would end every generation before its first token.
        return ChatPrompt(result.prompt, tuple(s for s in (*stop, eos) if s))

    return render


def renderer_for(vocab: Any, chat_format: str) -> Callable[..., ChatPrompt]:
    """How a model renders chats: its GGUF's own template (`gguf`, read from `vocab`, a llama.cpp model or
    vocabulary) or one of `FORMATS`."""
    if chat_format == "gguf":
        # special=True: without it llama.cpp renders control tokens such as <|im_end|> as ''.
        eos = vocab.detokenize([vocab.token_eos()], special=True).decode("utf-8", "ignore")
        bos = vocab.detokenize([vocab.token_bos()], special=True).decode("utf-8", "ignore")
        return gguf_template_renderer(vocab.metadata, eos, bos)
    if chat_format in FORMATS:
        return FORMATS[chat_format]
    raise ValueError(f"unknown chat_format `{chat_format}`; expected one of {[*FORMATS, 'gguf']}")
