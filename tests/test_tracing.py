"""Tracing: the request path's spans, with GenAI attributes, recorded by the OpenTelemetry SDK's in-memory
exporter around a real gateway app (the real Gemma model in process, the stand-in cloud over HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router import tracing
from router.app import create_app
from router.config import Settings
from tests.conftest import CLOUD_KEY_ENV, FaultyCloud, gemma_config

POLICY = """\
default:
  route: local
rules:
  - name: second-opinion
    when: {headers: {x-test: cascade}}
    route: local
    cascade: {metric: mean_logprob, threshold: 0.0}
"""


@pytest.fixture()
def traced(
    faulty_cloud: FaultyCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    config = gemma_config(
        faulty_cloud.v1,
        tmp_path / "ledger.sqlite",
        {"n_ctx": 1024, "default_max_tokens": 8},
        cache={"enabled": True, "semantic": False},
    )
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "policy.yaml").write_text(POLICY)
    monkeypatch.setenv(CLOUD_KEY_ENV, "sk-stand-in")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        app = create_app(Settings(config=tmp_path / "router.yaml", policy=tmp_path / "policy.yaml"))
        with TestClient(app) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:  # the model loads in the background
                assert time.monotonic() < deadline, client.get("/readyz").text
                time.sleep(0.1)
            exporter.clear()
            yield client, exporter
    finally:
        tracing.use_provider(None)


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    spans: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def ask(client: TestClient, **extra: object) -> None:
    headers = extra.pop("headers", {})
    body = {"model": "auto", "messages": [{"role": "user", "content": "Name a colour."}], "temperature": 0, **extra}
    response = client.post("/v1/chat/completions", json=body, headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text


def test_a_local_request_is_one_trace_with_genai_attributes(traced) -> None:
    client, exporter = traced
    ask(client)
    spans = by_name(exporter)
    (root,) = spans["router.request"]
    (attempt,) = spans["chat gemma-3-270m"]
    for child in (spans["router.decide"][0], spans["router.cache.lookup"][0], attempt):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    assert root.attributes["router.route"] == "local" and root.attributes["router.reason"] == "default"
    assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert attempt.attributes["gen_ai.provider.name"] == "llama.cpp"
    assert attempt.attributes["gen_ai.usage.output_tokens"] > 0 and attempt.attributes["gen_ai.usage.input_tokens"] > 0


def test_a_cascade_and_a_stream_are_traced_to_their_end(traced) -> None:
    client, exporter = traced
    ask(client, headers={"x-test": "cascade"})
    spans = by_name(exporter)
    (cascade,) = spans["router.cascade"]
    (cloud_call,) = spans["chat gpt-4o-mini"]
    assert cloud_call.parent.span_id == cascade.context.span_id
    assert cascade.attributes["router.cascade.metric"] == "mean_logprob"
    exporter.clear()
    with client.stream("POST", "/v1/chat/completions", json={"model": "cloud", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}) as response:  # fmt: skip
        assert response.status_code == 200
        assert not by_name(exporter).get("router.request")  # the request is not over while it streams
        body = "".join(response.iter_text())
    assert "[DONE]" in body
    (root,) = by_name(exporter)["router.request"]
    assert root.attributes["router.stream"] is True and root.attributes["http.response.status_code"] == 200


def test_off_means_no_spans_and_a_shared_null_context() -> None:
    tracing.use_provider(None)
    assert not tracing.enabled()
    assert tracing.span("anything") is tracing.span("else")
    assert tracing.start("x") is None
