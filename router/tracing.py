"""OpenTelemetry spans for the request path, with the GenAI semantic conventions' attributes.

Off by default, at no cost: until `configure` installs a tracer, `span()` hands back one shared null
context and nothing is imported. On (`tracing.enabled`, or `OTEL_EXPORTER_OTLP_ENDPOINT` set), spans go
over OTLP/HTTP through a batch processor:

    router.request             the whole request (route, reason, cache, status)
      router.decide            limits, classifier score and the policy's decision
      router.cache.lookup      exact and semantic lookup
      chat <model>             each backend attempt (gen_ai.* attributes; retries are attempts too)
      router.cascade           a low-confidence local answer sent on to the cloud

The cloud SDKs' own instrumentation, where installed, nests under `chat <model>`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)
_NULL = contextlib.nullcontext(None)
_tracer: Any = None
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def use_provider(provider: Any | None) -> None:
    """Trace with this TracerProvider (None turns tracing off); tests pass one with an in-memory exporter."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("hybrid-router")


def shutdown() -> None:
    """Flush what the batch processor still holds (at the gateway's shutdown)."""
    if _provider is not None and hasattr(_provider, "shutdown"):
        _provider.shutdown()


def configure(endpoint: str | None, service_name: str, sample_ratio: float) -> None:
    """Export spans over OTLP/HTTP to `endpoint` (the exporter's own default and env vars when None)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=ParentBasedTraceIdRatio(sample_ratio)
    )
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    log.info("tracing on: OTLP/HTTP to %s", endpoint or "the exporter's default endpoint")


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def span(name: str, client: bool = False, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span around a block (current for what runs inside it), or the shared null context when off."""
    if _tracer is None:
        return _NULL
    from opentelemetry.trace import SpanKind

    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    return _tracer.start_as_current_span(name, kind=kind, attributes=_clean(attributes), record_exception=True)


def start(name: str, **attributes: Any) -> Any:
    """A span that outlives a block (a stream's), ended with `finish`; None when off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, attributes=_clean(attributes))


@contextlib.contextmanager
def current(span_: Any) -> Iterator[None]:
    """Make a span from `start` the parent of what runs in the block."""
    if span_ is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span_, end_on_exit=False):
        yield


def annotate(span_: Any, **attributes: Any) -> None:
    if span_ is not None and span_.is_recording():
        span_.set_attributes(_clean(attributes))


def finish(span_: Any, status: int | None = None, **attributes: Any) -> None:
    if span_ is None:
        return
    annotate(span_, **attributes, **{"http.response.status_code": status})
    if status is not None and status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span_.set_status(Status(StatusCode.ERROR))
    span_.end()


ENGINES = {"llama-cpp": "llama.cpp", "openai-compatible": "openai", "litellm": "litellm"}


def attempt_attributes(backend: Any, ctx: Any) -> dict[str, Any]:
    """GenAI semantic-convention attributes of one call to a model."""
    return {
        "gen_ai.operation.name": "chat" if ctx.kind == "chat" else "text_completion",
        "gen_ai.provider.name": ENGINES.get(str(backend.stats().get("engine")), "unknown"),
        "gen_ai.request.model": backend.name,
        "gen_ai.request.max_tokens": ctx.params.get("max_tokens"),
        "gen_ai.request.temperature": ctx.params.get("temperature"),
        "gen_ai.request.top_p": ctx.params.get("top_p"),
        "router.tier": backend.tier,
    }


def completion_attributes(completion: Any) -> dict[str, Any]:
    return {
        "gen_ai.response.model": completion.model,
        "gen_ai.response.finish_reasons": [completion.finish_reason or "stop"],
        "gen_ai.usage.input_tokens": completion.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.usage.completion_tokens,
    }
