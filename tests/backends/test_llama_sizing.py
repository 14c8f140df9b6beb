"""`parallel: auto`: the in-process model decodes as many sequences together as the memory holds."""

from __future__ import annotations

from pathlib import Path

from router.backends.llama_sizing import AUTO_MAX_SEQUENCES, auto_sequences, kv_bytes_per_token, usable_memory_bytes
from router.backends.model_files import model_gguf_path
from router.config import LlamaCppModel, Settings
from router.tokens import load_vocab
from tests.conftest import Gateway

GIB = 1024**3
# Qwen2.5-Coder-1.5B's shape (the default model): 28 layers, 2 KV heads of 128.
QWEN = {
    "general.architecture": "qwen2",
    "qwen2.block_count": "28",
    "qwen2.attention.head_count": "12",
    "qwen2.attention.head_count_kv": "2",
    "qwen2.embedding_length": "1536",
}


def test_one_tokens_kv_cache_comes_from_the_models_shape() -> None:
    assert kv_bytes_per_token(QWEN) == 28 * 2 * (128 + 128) * 2  # 28 KiB: 112 MiB for a 4096-token sequence
    assert kv_bytes_per_token({"general.architecture": "x"}) is None


def test_a_large_machine_gets_the_most_sequences_and_a_small_one_fewer() -> None:
    assert auto_sequences(QWEN, 4096, memory_bytes=24 * GIB) == AUTO_MAX_SEQUENCES
    assert auto_sequences(QWEN, 4096, memory_bytes=2 * GIB) == 4  # a quarter of 2 GiB holds four 112 MiB caches
    assert auto_sequences(QWEN, 32768, memory_bytes=2 * GIB) == 1  # never none
    assert auto_sequences({}, 4096, memory_bytes=24 * GIB) == 4  # shape unknown: the old fixed default


def test_a_containers_memory_limit_is_what_counts(tmp_path: Path) -> None:
    limit = tmp_path / "memory.max"
    limit.write_text(f"{3 * GIB}\n")
    assert usable_memory_bytes(limit) == 3 * GIB
    limit.write_text("max\n")  # no limit: the machine's available memory
    assert usable_memory_bytes(limit) is not None and usable_memory_bytes(limit) != 3 * GIB


def test_parallel_is_auto_unless_instances_are_asked_for() -> None:
    assert LlamaCppModel().parallel == "auto"
    assert LlamaCppModel(instances=2).parallel == 1
    assert LlamaCppModel(parallel=8).parallel == 8


def test_the_gateway_decodes_as_many_sequences_as_auto_sizes_for_its_model(gateway: Gateway) -> None:
    vocab = load_vocab(str(model_gguf_path(None, "gemma-3-270m", Settings().model_dir)))
    assert gateway.stats()["parallel"] == auto_sequences(vocab.metadata, 2048) > 1
