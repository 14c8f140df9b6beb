"""What the batched engine (`llama_batch.py`) keeps per request and per sequence."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router.backends.confidence import ConfidenceMeter
from router.backends.llama_sampling import Sampling


@dataclass(slots=True)
class Generation:
    """One request's sequence: what it asks for, and the callbacks that take its results (engine thread)."""

    tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stops: list[str]
    emit: Callable[[str], None]
    finish: Callable[[str, int], None]
    """(finish reason: stop | length | cancelled | error, completion tokens), called once."""
    cancel: threading.Event = field(default_factory=threading.Event)
    meter: ConfidenceMeter | None = None
    start: Callable[[], None] | None = None
    """Called when the job gets a sequence (it stops waiting)."""
    generated: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Slot:
    """One of the context's sequences: the KV cells it holds, and the job (if any) generating in it."""

    seq: int
    resident: list[int] = field(default_factory=list)
    """Tokens whose KV cells this sequence holds (positions 0..len-1): its prompt and what it generated,
    as far as a decode has computed them (a token just sampled is not yet among them)."""
    job: Generation | None = None
    fed: int = 0
    """How many of the job's prompt tokens are in the cache."""
    sampler: Any = None
    pending: bytes = b""
    text: str = ""
    """Text decoded so far; `emitted` of it has gone to the client (the rest may be a stop's beginning)."""
    emitted: int = 0
    admitted: int = 0
    """When its job got the sequence (a counter): prompts are prefilled oldest first."""
