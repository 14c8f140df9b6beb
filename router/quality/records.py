"""One judgement: how a served (or shadow) answer compared with the reference cloud model's, and what the
router knew when it routed the request. Judgements are what quality estimates and calibration read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Stratum = Literal["local", "cloud"]


@dataclass(frozen=True, slots=True)
class Judgement:
    at: float
    """Unix time the judgement was made."""
    request_id: str
    route: str
    """How the request was served: local, cache or cloud."""
    stratum: Stratum
    """`local`: a local (or locally made, cached) answer was served and the reference answered in shadow;
    `cloud`: the cloud answer was served and the local model answered in shadow (exploration)."""
    rule: str
    """Why it went where it went, as the ledger says it (rule name, `classifier`, `default`...)."""
    tenant: str
    model: str
    """The local model whose answer was judged."""
    reference: str
    """The cloud model it was compared with."""
    judge: str
    """The judging model, or `check` when a deterministic check settled it."""
    method: str
    """identical | number | choice | json | judge."""
    local_score: float
    """Quality of the local answer, 0..1."""
    reference_score: float
    """Quality of the reference answer, 0..1."""
    share: float
    """The probability this request had of being judged: its weight is 1 / share."""
    escalation: float | None = None
    """The classifier's escalation score, when the route was `auto`."""
    threshold: float | None = None
    """The threshold it was compared with."""
    auto_rule: str | None = None
    """The policy rule whose `route: auto` threshold decided (`default` for the default), for calibration."""
    embedding: tuple[float, ...] | None = field(default=None, repr=False)
    prompt: str | None = field(default=None, repr=False)
    """The last user message, only when `shadow.store_prompts` is on."""

    @property
    def served_score(self) -> float:
        return self.local_score if self.stratum == "local" else self.reference_score

    @property
    def weight(self) -> float:
        return 1.0 / self.share if self.share > 0 else 0.0

    def to_json(self) -> str:
        """Everything but the embedding, which is kept apart (`embedding_bytes`): the quality figures read
        judgements often and never need it; training reads it."""
        data: dict[str, Any] = asdict(self)
        data.pop("embedding")
        return json.dumps({k: v for k, v in data.items() if v is not None}, separators=(",", ":"))

    def embedding_bytes(self) -> bytes:
        """The embedding as float16 bytes (a 384-wide vector: 768 bytes); empty without one."""
        return b"" if self.embedding is None else np.asarray(self.embedding, np.float16).tobytes()

    @classmethod
    def from_json(cls, text: str | bytes, embedding: bytes | None = None) -> Judgement:
        data = json.loads(text)
        if embedding:
            data["embedding"] = tuple(float(x) for x in np.frombuffer(embedding, np.float16))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def vector(self) -> np.ndarray | None:
        return None if self.embedding is None else np.asarray(self.embedding, np.float32)
