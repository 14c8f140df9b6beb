"""Backends: anything that can answer a request. The app factory builds one per configured model."""

from __future__ import annotations

from pathlib import Path

from router.backends.base import Backend
from router.config import LiteLLMModel, LlamaCppModel, OpenAICompatibleModel


def build_backend(name: str, spec: LlamaCppModel | OpenAICompatibleModel | LiteLLMModel, model_dir: Path) -> Backend:
    """The backend for one configured model; heavy libraries are imported later, in `start()`."""
    if isinstance(spec, LlamaCppModel):
        from router.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(name, spec, model_dir)
    if isinstance(spec, OpenAICompatibleModel):
        from router.backends.openai_http import OpenAIHttpBackend

        return OpenAIHttpBackend(name, spec)
    from router.backends.litellm_backend import LiteLLMBackend

    return LiteLLMBackend(name, spec)


__all__ = ["Backend", "build_backend"]
