"""Count prompt tokens for policy rules and limits, before any model is called.

With a GGUF local model we count with its own vocabulary (exact for the local route); otherwise, or
before the model has loaded, we estimate at four characters a token, the usual rule of thumb for
English text with BPE vocabularies.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from router.types import content_text

ExactCounter = Callable[[str], int | None]


class TokenCounter:
    """Counts per message, remembering recent messages: a conversation resends every earlier message (and
    the same system prompt) with each turn, so most messages have been counted before."""

    def __init__(self, exact: ExactCounter | None = None, remember: int = 8192) -> None:
        self._exact = exact
        self._known: dict[str, int] = {}
        self._remember = remember

    def count(self, text: str) -> int:
        if (known := self._known.get(text)) is not None:
            return known
        n = self._exact(text) if self._exact is not None else None
        if n is None:
            return math.ceil(len(text) / 4)  # an estimate (the model is not loaded yet): not remembered
        if len(self._known) >= self._remember:
            self._known.pop(next(iter(self._known)))  # oldest first
        self._known[text] = n
        return n

    def count_messages(self, messages: tuple[Mapping[str, Any], ...]) -> int:
        return sum(self.count(content_text(m.get("content"))) for m in messages)


def load_vocab(model_path: str) -> Any:
    """A GGUF file's vocabulary only (no weights), loaded without llama.cpp's chatter on stderr."""
    from llama_cpp import Llama

    with quiet_stderr():  # llama.cpp warns about the context it does not need for a vocabulary
        return Llama(model_path=model_path, vocab_only=True, verbose=False)


def count_with(vocab: Any, text: str) -> int:
    """Tokens of `text` in a loaded vocabulary, as a prompt's content (no BOS, no special tokens)."""
    return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def gguf_vocab_counter(model_path: str) -> ExactCounter:
    """An exact counter from a GGUF file's vocabulary."""
    vocab = load_vocab(model_path)
    return lambda text: count_with(vocab, text)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (file descriptor 2) for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
