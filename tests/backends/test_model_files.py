"""Packaged GGUFs: chunks are assembled in order, checked against their sha256 once, and refused when wrong."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.backends.model_files import PACKAGED_MODELS, PackagedModel, _concatenate_chunks, locate
from router.errors import ConfigError

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


@pytest.fixture()
def chunk_packages(tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """Three importable packages, each holding one chunk, as the PyPI chunk packages do."""
    names = tuple(f"fake_chunks_{os.getpid()}_{i}" for i in range(len(CHUNKS)))
    for name, data in zip(names, CHUNKS, strict=True):
        (tmp_path / "site" / name / "data").mkdir(parents=True)
        (tmp_path / "site" / name / "__init__.py").write_text("")
        (tmp_path / "site" / name / "data" / "part.bin").write_bytes(data)
    sys.path.insert(0, str(tmp_path / "site"))
    try:
        yield names
    finally:
        sys.path.remove(str(tmp_path / "site"))


def _model(modules: tuple[str, ...], sha256: str) -> PackagedModel:
    return PackagedModel(
        name="fake",
        file_name="fake.gguf",
        chat_format="gguf",
        install="fake-chunks",
        modules=modules,
        relative_paths=("data/part.bin",) * len(modules),
        sha256=sha256,
        assembler=_concatenate_chunks,
    )


def test_chunks_are_joined_in_order_and_verified_once(chunk_packages: tuple[str, ...], tmp_path: Path) -> None:
    whole = b"".join(CHUNKS)
    model = _model(chunk_packages, hashlib.sha256(whole).hexdigest())
    path = locate(model, tmp_path / "models")
    assert path.read_bytes() == whole
    assert path.with_name("fake.gguf.verified").exists()
    mtime = path.stat().st_mtime_ns
    assert locate(model, tmp_path / "models") == path and path.stat().st_mtime_ns == mtime  # not rebuilt


def test_chunks_that_do_not_hash_right_are_refused(chunk_packages: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="assemble to sha256"):
        locate(_model(chunk_packages, "0" * 64), tmp_path / "models")
    assert not list((tmp_path / "models").glob("fake.gguf*"))  # no half file, no marker


def test_a_missing_chunk_package_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the package"):
        locate(_model(("no_such_chunk_package_xyz",), "0" * 64), tmp_path)


def test_every_registered_model_names_its_chat_format_and_source() -> None:
    for model in PACKAGED_MODELS.values():
        assert model.chat_format in ("gguf", "gemma", "chatml", "llama-3")
        assert model.modules and model.install
        if model.assembler is _concatenate_chunks:
            assert model.sha256 and len(model.relative_paths) == len(model.modules)


def test_a_copied_model_file_is_verified_by_its_bytes_once(tmp_path: Path) -> None:
    """A COPY or rsync gives the assembled file a new mtime: its sha256 is checked once and recorded, so
    the packages that shipped its parts need not stay installed; a changed byte is not accepted."""
    from router.backends.model_files import _mark_verified, _verified

    target = tmp_path / "m.gguf"
    target.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    _mark_verified(target, digest)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a copy would
    assert _verified(target, digest)
    marker = target.with_name("m.gguf.verified").read_text()
    assert str(stat.st_mtime_ns + 10**9) in marker  # recorded: the next start costs a stat again
    target.write_bytes(b"weightz" * 1000)  # same size, other bytes
    assert not _verified(target, digest)
