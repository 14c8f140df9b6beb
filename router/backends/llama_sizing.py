"""How many sequences the in-process model decodes together when `parallel: auto` (the default).

Every sequence has a KV stream of `n_ctx` cells of its own (`llama_batch.py` keeps them apart so
temperature 0 gives the same tokens batched or alone), allocated when the model loads. So the number of
sequences is what the machine's memory holds: a quarter of the memory this process may use (the
cgroup's limit in a container, else what the machine has available) divided by one sequence's KV cache,
which the GGUF's own shape gives (layers x KV heads x head size x K and V x 2 bytes). At most
`AUTO_MAX_SEQUENCES`: beyond that, on the CPUs this runs on, each stream slows more than the batch gains.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

AUTO_MAX_SEQUENCES = 16
"""On two cores, 8 streams batched reach 1.97x one stream and 16 reach 2.2x (bench/RESULTS.md)."""
KV_MEMORY_SHARE = 0.25
"""The share of the usable memory the KV caches may take; the weights, embedder and cache need the rest."""
F16_BYTES = 2


def kv_bytes_per_token(metadata: Mapping[str, str]) -> int | None:
    """Bytes one token's keys and values take in an f16 KV cache, from a GGUF's metadata (None if unknown)."""
    arch = metadata.get("general.architecture")
    try:
        layers = int(metadata[f"{arch}.block_count"])
        heads = int(metadata[f"{arch}.attention.head_count"])
        kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
        embedding = int(metadata[f"{arch}.embedding_length"])
        key = int(metadata.get(f"{arch}.attention.key_length", embedding // heads))
        value = int(metadata.get(f"{arch}.attention.value_length", key))
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    return layers * kv_heads * (key + value) * F16_BYTES


def usable_memory_bytes(cgroup: Path = Path("/sys/fs/cgroup/memory.max")) -> int | None:
    """What this process may use: the container's memory limit when there is one, else what is available."""
    try:
        limit = cgroup.read_text().strip()
        if limit.isdigit():
            return int(limit)
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def auto_sequences(metadata: Mapping[str, str], n_ctx: int, memory_bytes: int | None = None) -> int:
    """Sequences to decode together: as many `n_ctx` KV caches as a quarter of the memory holds, 1..16."""
    per_token = kv_bytes_per_token(metadata)
    memory = usable_memory_bytes() if memory_bytes is None else memory_bytes
    if per_token is None or memory is None:
        log.warning("parallel: auto could not size the KV cache (model shape or memory unknown); using 4")
        return 4
    fits = int(KV_MEMORY_SHARE * memory // (per_token * n_ctx))
    return max(1, min(AUTO_MAX_SEQUENCES, fits))
