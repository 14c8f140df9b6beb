"""A cached answer, and how it is written to a store (JSON, so that Redis holds readable values)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router.types import Completion, Usage


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str | None
    finish_reason: str | None
    usage: Usage
    model: str
    """The model name the upstream reported (what the client saw in `model`)."""
    served_by: str
    """The configured model that produced it."""
    message_extra: Mapping[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @classmethod
    def of(cls, completion: Completion, served_by: str) -> CachedAnswer:
        return cls(
            completion.content,
            completion.finish_reason,
            completion.usage,
            completion.model,
            served_by,
            dict(completion.message_extra),
        )

    def completion(self) -> Completion:
        return Completion(self.content, self.finish_reason, self.usage, self.model, self.message_extra)


@dataclass(frozen=True, slots=True)
class Record:
    """What a store keeps under one key: the answer, and for the semantic index its question's vector."""

    answer: CachedAnswer
    partition: str
    """Hash of everything but the last question: only answers to the same conversation may match."""
    vector: np.ndarray | None = None
    expires_at: float = 0.0
    """Wall-clock time it expires (stores also set a TTL; replicas rebuilding their index read this)."""
    question: str | None = None
    """The last user message it answered: a semantic match is checked against it (`guard.py`)."""

    def dumps(self) -> str:
        a = self.answer
        body: dict[str, Any] = {
            "content": a.content,
            "finish_reason": a.finish_reason,
            "usage": [a.usage.prompt_tokens, a.usage.completion_tokens],
            "model": a.model,
            "served_by": a.served_by,
            "extra": a.message_extra,
            "created": a.created,
            "partition": self.partition,
            "expires_at": self.expires_at,
            "question": self.question,
        }
        if self.vector is not None:
            body["vector"] = encode_vector(self.vector)
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Record:
        body = json.loads(raw)
        answer = CachedAnswer(
            content=body["content"],
            finish_reason=body["finish_reason"],
            usage=Usage(*body["usage"]),
            model=body["model"],
            served_by=body["served_by"],
            message_extra=body.get("extra") or {},
            created=body["created"],
        )
        vector = decode_vector(body["vector"]) if body.get("vector") else None
        return cls(answer, body["partition"], vector, body.get("expires_at", 0.0), body.get("question"))


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32)
