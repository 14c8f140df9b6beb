"""The embedder's ONNX graph, built from the safetensors without torch, gives sentence-transformers' vectors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TEXTS = [
    "What is the capital of France?",
    "hi",
    "Prove that there are infinitely many primes, and explain each step of the argument carefully.",
    "Übersetze bitte: 'Wo ist der Bahnhof?' — und erkläre die Grammatik.",
    "def f(x):\n    return x ** 2  # a short program",
    "word " * 400,  # past the model's 256 word pieces: truncated the same way
]


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory):
    from router.classify.embedder import default_model_path
    from router.classify.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(default_model_path(), tmp_path_factory.mktemp("onnx"))


def test_vectors_match_sentence_transformers(onnx_embedder) -> None:
    from router.classify.embedder import Embedder

    ours = onnx_embedder.embed(TEXTS)  # one padded batch: the attention mask must hide the padding
    reference = Embedder().embed(TEXTS)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    one_by_one = np.stack([onnx_embedder.embed([t])[0] for t in TEXTS])
    np.testing.assert_allclose(one_by_one, ours, atol=1e-4)


def test_building_and_running_the_embedder_never_imports_torch(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from router.classify.embedder import default_model_path\n"
        "from router.classify.onnx_embedder import OnnxEmbedder\n"
        f"vectors = OnnxEmbedder(default_model_path(), Path({str(tmp_path)!r})).embed(['hello'])\n"
        "assert vectors.shape == (1, 384), vectors.shape\n"
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    assert list(tmp_path.glob("*.onnx"))
