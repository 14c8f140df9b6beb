"""The local model's token log-probabilities in OpenAI's shapes, for requests that ask (`logprobs`).

The confidence meter keeps each sampled token with its log-probability (`ConfidenceMeter(keep_tokens)`);
here they are lined up with the text the client actually got: tokens past it (the pieces of a stop
sequence) are dropped, and a last token the meter could not see (an answer cut by `max_tokens` ends on
a token no callback follows) is read from the last distribution it saw.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from router.backends.confidence import ConfidenceMeter, EarlyCheck, TokenLogprob
from router.types import RequestContext

if TYPE_CHECKING:
    from router.classify.prompt_state import StateProbe

Entry = tuple[bytes, float, tuple[tuple[bytes, float], ...]]
"""(token bytes, log-probability, (alternative bytes, log-probability)...)"""


def aligned_entries(llama: Any, meter: ConfidenceMeter, text: str) -> list[Entry]:
    target = text.encode("utf-8")
    used = b""
    entries: list[Entry] = []

    def entry(token: TokenLogprob) -> Entry:
        alternatives = tuple((llama.detokenize([i]), lp) for i, lp in token.top)
        return llama.detokenize([token.token]), token.logprob, alternatives

    for token in meter.tokens:
        piece = llama.detokenize([token.token])
        if not piece:
            continue  # a special token (end of turn) the text does not show
        if not target.startswith(used + piece):
            break  # past the text: a stop sequence's pieces
        entries.append(entry(token))
        used += piece
    rest = target[len(used) :]
    if rest:
        ids = llama.tokenize(rest, add_bos=False, special=False)
        if len(ids) == 1 and (last := meter.last_token(ids[0])) is not None:
            entries.append(entry(last))
    return entries


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def chat_logprobs(entries: list[Entry]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": _text(piece),
                "logprob": logprob,
                "bytes": list(piece),
                "top_logprobs": [{"token": _text(p), "logprob": lp, "bytes": list(p)} for p, lp in top],
            }
            for piece, logprob, top in entries
        ],
        "refusal": None,
    }


def text_logprobs(entries: list[Entry]) -> dict[str, Any]:
    offsets, at = [], 0
    for piece, _, _ in entries:
        offsets.append(at)
        at += len(_text(piece))
    return {
        "tokens": [_text(piece) for piece, _, _ in entries],
        "token_logprobs": [logprob for _, logprob, _ in entries],
        "top_logprobs": [{_text(p): lp for p, lp in top} for _, _, top in entries],
        "text_offset": offsets,
    }


def requested(kind: str, passthrough: Any) -> tuple[bool, int]:
    """(whether logprobs were asked for, how many alternatives per token)."""
    value = passthrough.get("logprobs")
    if kind == "text":  # text completions: `logprobs: N` asks for N alternatives
        return (value is not None and value is not False, int(value or 0) if not isinstance(value, bool) else 0)
    return bool(value), int(passthrough.get("top_logprobs") or 0)


def meter_for(
    ctx: RequestContext, confidence: bool | EarlyCheck, cancel: threading.Event, probe: StateProbe | None = None
) -> ConfidenceMeter | None:
    """A meter when the cascade needs the confidence or the client asked for log-probabilities; an early
    check is bound to the generation's `cancel`, so an escalation stops the generation there. With the
    model's state `probe`, the cascade's confidence carries what it read in the prompt."""
    wants, top = requested(ctx.kind, ctx.passthrough)
    if not (wants or confidence):
        return None
    early = confidence if isinstance(confidence, EarlyCheck) else None
    if early is not None:
        early.bind(cancel)
    probe = probe if confidence else None  # what the prompt said matters only to the cascade
    return ConfidenceMeter(keep_tokens=wants, top_logprobs=min(top, 20), early=early, probe=probe)


def formatted_logprobs(ctx: RequestContext, entries: list[Entry] | None) -> dict[str, Any] | None:
    if entries is None:
        return None
    return chat_logprobs(entries) if ctx.kind == "chat" else text_logprobs(entries)
