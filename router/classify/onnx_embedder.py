"""The request path's embedder: the sentence-transformers model as ONNX, run by onnxruntime.

sentence-transformers on torch spends ~25-50 ms on one short prompt on two cores, mostly in framework
overhead; the same network under onnxruntime takes a few milliseconds. The ONNX file is built once, at
the first start, into the model cache folder, keyed by a hash of the model's files: for BERT encoders
(the default) straight from the safetensors without torch (`onnx_bert.py`), for anything else by a torch
export (the `classifier` extra). Pooling (mean over the
attention mask) and normalisation run in numpy, as sentence-transformers does them; the vectors match
torch's to cosine 1.0000 (measured). onnxruntime's dynamic int8 quantisation was tried and left out:
it moved vectors to cosine 0.92-0.97 of the originals, more than the semantic cache's margin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
GRAPH_VERSION = "g2"
"""Part of the ONNX file's name: a new way of building the graph never reads a file built the old way."""
MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on 256 word pieces at most; sentence-transformers truncates there too."""


def _fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".txt"):
            stat = path.stat()
            digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def export_onnx(model_dir: Path, target: Path) -> None:
    """Write the transformer of a sentence-transformers model as ONNX (token ids + mask → token states).

    BERT encoders (the default embedder) are built from their safetensors without torch; any other
    architecture is exported through torch, which then must be installed (the `classifier` extra).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")  # replicas starting together export side by side
    if _is_bert(model_dir):
        from router.classify.onnx_bert import build_bert_onnx

        partial.write_bytes(build_bert_onnx(model_dir))
        partial.replace(target)  # atomic: a concurrent start never reads half a file
        return
    _export_with_torch(model_dir, partial)
    partial.replace(target)


def _is_bert(model_dir: Path) -> bool:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "bert" and (model_dir / "model.safetensors").is_file()


def _export_with_torch(model_dir: Path, partial: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class TokenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            TokenStates(),
            (ids, torch.ones_like(ids)),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_states"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )


class OnnxEmbedder:
    def __init__(self, model_dir: Path, cache_dir: Path, threads: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        onnx_file = cache_dir / f"{model_dir.name}-{_fingerprint(model_dir)}-{GRAPH_VERSION}.onnx"
        if not onnx_file.exists():
            log.info("exporting the embedder %s to ONNX (once) at %s", model_dir, onnx_file)
            export_onnx(model_dir, onnx_file)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=_max_tokens(model_dir))
        self._tokenizer.enable_padding()
        self.dimensions = int(self._session.get_outputs()[0].shape[-1] or 384)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text (mean of the token states under the mask)."""
        rows = [self._embed_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(rows) if rows else np.empty((0, self.dimensions), dtype=np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (states,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _max_tokens(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", MAX_TOKENS))
    return MAX_TOKENS
