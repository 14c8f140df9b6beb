"""The inputs that once made 5xx, and any JSON at all: a 2xx or 4xx in the error envelope, and the same
keep-alive connection answers the next request."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway

GOOD = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
POST_ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/router/explain", "/v1/router/cache/clear"]


class KeepAlive:
    """One TCP connection, HTTP/1.1 requests in turn: a reset after a bad request fails the next call."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rb")

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        head = (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        self.sock.sendall(head + body)
        status_line = self.file.readline()
        assert status_line, "the gateway closed the connection instead of answering"
        status = int(status_line.split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(self.file.read(length))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def assert_envelope(status: int, body: object) -> None:
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict)
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["message"]


HOSTILE = {
    "array nested 5,000 deep": b"[" * 5000 + b"]" * 5000,
    "object nested 5,000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "content nested 100 deep": json.dumps(
        {**GOOD, "messages": [{"role": "user", "content": json.loads("[" * 100 + "]" * 100)}]}
    ).encode(),
    "lone surrogate in content": b'{"model": "auto", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
    "lone surrogate in model": b'{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
    "lone surrogate in a key": b'{"model": "auto", "\\ud83d": 1, "messages": [{"role": "user", "content": "x"}]}',
    "invalid UTF-8": b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "NaN temperature": b'{"model": "auto", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
    "huge integer": b'{"model": "auto", "max_tokens": 1' + b"0" * 4000 + b', "messages": []}',
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/router/explain"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_body_is_a_4xx_and_the_connection_survives(fuzz_gateway: Gateway, path: str, name: str) -> None:
    conn = KeepAlive(fuzz_gateway.url)
    try:
        status, body = conn.post(path, HOSTILE[name])
        assert 400 <= status < 500, body
        assert_envelope(status, body)
        status, body = conn.post("/v1/chat/completions", json.dumps(GOOD).encode())
        assert status == 200, body
        assert body["choices"][0]["message"]["content"]
    finally:
        conn.close()


def test_the_errors_name_what_was_wrong(fuzz_gateway: Gateway) -> None:
    conn = KeepAlive(fuzz_gateway.url)
    try:
        _, deep = conn.post("/v1/chat/completions", HOSTILE["array nested 5,000 deep"])
        assert deep["error"]["code"] == "json_too_deep"
        _, surrogate = conn.post("/v1/chat/completions", HOSTILE["lone surrogate in content"])
        assert surrogate["error"]["code"] == "invalid_unicode"
        assert surrogate["error"]["param"] == "messages[0].content"
        assert "\\ud800" in surrogate["error"]["message"]
    finally:
        conn.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["model", "messages", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stop", "seed",
          "stream_options", "tools", "tool_choice", "response_format", "logprobs", "user", "metadata", "headers",
          "tenant", "logit_bias", "presence_penalty"]  # fmt: skip
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id"]

# A valid body with one field replaced by anything: reaches deeper than random JSON, which fails early.
mutated_bodies = st.builds(
    lambda base, field, value: {**base, field: value},
    st.sampled_from([GOOD, {"model": "auto", "prompt": "hi", "max_tokens": 4}, {}]),
    st.sampled_from(FIELDS),
    json_values,
)
mutated_messages = st.builds(
    lambda field, value: {**GOOD, "messages": [{"role": "user", "content": "hi", field: value}]},
    st.sampled_from(MESSAGE_FIELDS),
    json_values,
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def http(fuzz_gateway: Gateway) -> httpx.Client:
    with httpx.Client(base_url=fuzz_gateway.url, timeout=30) as client:
        yield client


@FUZZ
@given(path=st.sampled_from(POST_ENDPOINTS), body=json_values | mutated_bodies | mutated_messages)
def test_any_json_body_gets_a_2xx_or_4xx(http: httpx.Client, path: str, body: object) -> None:
    response = http.post(path, json=body)
    assert_envelope(response.status_code, response.json())


@FUZZ
@given(path=st.sampled_from(POST_ENDPOINTS), raw=st.binary(max_size=200))
def test_any_bytes_get_a_4xx(http: httpx.Client, path: str, raw: bytes) -> None:
    response = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert_envelope(response.status_code, response.json())


header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40)


@FUZZ
@given(
    name=st.sampled_from(
        [
            "x-router-timeout",
            "x-request-id",
            "authorization",
            "x-session-id",
            "x-team",
            "x-router-route",
            "content-type",
            "x-tenant",
            "x-router-explain",
        ]
    ),
    value=header_values,
    stream=st.booleans(),
)
def test_any_header_gets_a_2xx_or_4xx(http: httpx.Client, name: str, value: str, stream: bool) -> None:
    headers = {name: value.strip().encode("latin-1")}  # any byte a header may carry, not only ASCII
    response = http.post("/v1/chat/completions", json={**GOOD, "stream": stream}, headers=headers)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        assert response.status_code == 200
        assert "data: [DONE]" in response.text
    else:
        assert_envelope(response.status_code, response.json())
