"""Every message shape the OpenAI, Anthropic and Responses schemas allow, through every endpoint, into the
local model's own chat template: an answer (200) or a refusal that says what was refused (4xx), never a 500.

The gateway here has no cloud and routes everything to a local model rendered by its GGUF's Jinja template
(SmolLM2, for speed; the default model renders the same way), so nothing can hide a shape the local model
cannot read. Requests whose content is only text must be answered; a content part the local model cannot
take (image, audio, file) must be refused with `capability_unavailable` naming what it needs; a part type
the API does not know must be refused with a 400 naming the type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, config_gateway

LOCAL_ONLY = {
    "models": {
        "smollm2": {"engine": "llama-cpp", "package": "smollm2-135m-instruct", "n_ctx": 2048, "n_threads": 1},
    },
    "routes": {"local": "smollm2", "cloud": []},
}
POLICY = "default: {route: local}\n"
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40)


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("shapes")
    config = {**LOCAL_ONLY, "ledger": {"path": str(tmp / "ledger.sqlite")}, "cache": {"enabled": False}}
    with config_gateway(tmp, config, POLICY) as gw:
        yield gw


def post(gw: Gateway, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.url}{path}", json=body, timeout=120)


def assert_answered_or_refused(response: httpx.Response, text_only: bool) -> None:
    assert response.status_code < 500, response.text
    if text_only:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400, response.text


# -- OpenAI chat completions -------------------------------------------------------------------------

TEXT_PART = st.builds(lambda t: {"type": "text", "text": t}, TEXT)
IMAGE_PART = st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
AUDIO_PART = st.just({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}})
FILE_PART = st.just({"type": "file", "file": {"file_id": "file-123"}})
NON_TEXT = st.one_of(IMAGE_PART, AUDIO_PART, FILE_PART)
CONTENT = st.one_of(TEXT, st.lists(TEXT_PART, min_size=1, max_size=4))
USER_CONTENT = st.one_of(CONTENT, st.lists(st.one_of(TEXT_PART, NON_TEXT), min_size=1, max_size=4))
ASSISTANT = st.one_of(
    st.builds(lambda c: {"role": "assistant", "content": c}, CONTENT),
    st.builds(lambda t: {"role": "assistant", "content": [{"type": "refusal", "refusal": t}]}, TEXT),
    st.builds(
        lambda c: {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": c}}],
        },
        st.just('{"x": 1}'),
    ),
)
SYSTEM = st.builds(lambda role, c: {"role": role, "content": c}, st.sampled_from(["system", "developer"]), CONTENT)


@st.composite
def openai_messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages = draw(st.lists(SYSTEM, max_size=1))
    for _ in range(draw(st.integers(0, 2))):  # earlier turns
        messages.append({"role": "user", "content": draw(CONTENT)})
        answer = draw(ASSISTANT)
        messages.append(answer)
        if answer.get("tool_calls"):
            messages.append({"role": "tool", "tool_call_id": "call_1", "content": draw(CONTENT)})
    messages.append({"role": "user", "content": draw(USER_CONTENT)})
    return messages


def text_only(messages: list[dict[str, Any]]) -> bool:
    """Only text: no part the local model cannot see, and no tool turns (a conversation with tool calls needs
    a model that calls tools, and the local one here declares none)."""
    return all(
        (not isinstance(m.get("content"), list) or all(p["type"] in ("text", "refusal") for p in m["content"]))
        and not m.get("tool_calls")
        and m["role"] != "tool"
        for m in messages
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=openai_messages(), stream=st.booleans())
def test_every_chat_message_shape_is_answered_or_refused_clearly(
    local_gateway: Gateway, messages: list[dict[str, Any]], stream: bool
) -> None:
    body = {"model": "auto", "messages": messages, "max_tokens": 1, "temperature": 0, "stream": stream}
    response = post(local_gateway, "/v1/chat/completions", body)
    assert_answered_or_refused(response, text_only(messages))
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "capability_unavailable"
    explained = post(local_gateway, "/v1/router/explain", {"model": "auto", "messages": messages})
    assert explained.status_code == 200, explained.text
    assert (explained.json()["deny"] is None) == text_only(messages)


@pytest.mark.parametrize(
    ("part", "status", "said"),
    [
        ({"type": "text", "text": "Say hi."}, 200, None),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}, 400, "vision"),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, 400, "audio"),
        ({"type": "file", "file": {"file_id": "file-123"}}, 400, "files"),
        ({"type": "video_url", "video_url": {"url": "x"}}, 400, "`video_url`"),
        ({"type": "text"}, 400, "without a string `text`"),
        ({"text": "no type"}, 400, "has no `type`"),
    ],
)
def test_each_content_part_type_is_answered_named_or_refused(
    local_gateway: Gateway, part: dict[str, Any], status: int, said: str | None
) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Be brief."}, part]}]
    response = post(local_gateway, "/v1/chat/completions", {"model": "auto", "messages": messages, "max_tokens": 2})
    assert response.status_code == status, response.text
    if said is not None:
        assert said in response.json()["error"]["message"]


def test_text_parts_reach_the_local_model_as_one_message(local_gateway: Gateway) -> None:
    """What LangChain and many SDKs send; the chat template once failed on it with a 500."""
    parts = [{"type": "text", "text": "Say hi."}, {"type": "text", "text": "Be brief."}]
    as_parts = post(local_gateway, "/v1/chat/completions",
                    {"model": "auto", "messages": [{"role": "user", "content": parts}], "max_tokens": 8,
                     "temperature": 0})  # fmt: skip
    as_text = post(local_gateway, "/v1/chat/completions",
                   {"model": "auto", "messages": [{"role": "user", "content": "Say hi.\nBe brief."}], "max_tokens": 8,
                    "temperature": 0})  # fmt: skip
    assert as_parts.status_code == as_text.status_code == 200, as_parts.text
    assert as_parts.json()["choices"][0]["message"]["content"] == as_text.json()["choices"][0]["message"]["content"]
    assert as_parts.json()["usage"]["prompt_tokens"] == as_text.json()["usage"]["prompt_tokens"]


# -- Anthropic Messages -----------------------------------------------------------------------------

A_TEXT = st.builds(lambda t: {"type": "text", "text": t}, TEXT)
A_IMAGE = st.just({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
A_CONTENT = st.one_of(TEXT, st.lists(A_TEXT, min_size=1, max_size=3))


@st.composite
def anthropic_request(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    messages: list[dict[str, Any]] = []
    tools = False
    for _ in range(draw(st.integers(0, 2))):
        messages.append({"role": "user", "content": draw(A_CONTENT)})
        if draw(st.booleans()):
            messages.append({"role": "assistant", "content": draw(A_CONTENT)})
        else:
            use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}
            messages.append({"role": "assistant", "content": [*draw(st.lists(A_TEXT, max_size=1)), use]})
            result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": draw(A_CONTENT)}
            messages.append({"role": "user", "content": [result]})
            messages.append({"role": "assistant", "content": draw(A_CONTENT)})
            tools = True
    last = draw(st.one_of(A_CONTENT, st.lists(st.one_of(A_TEXT, A_IMAGE), min_size=1, max_size=3)))
    messages.append({"role": "user", "content": last})
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": messages}
    if draw(st.booleans()):
        body["system"] = draw(A_CONTENT)
    plain = not tools and not (isinstance(last, list) and any(b["type"] == "image" for b in last))
    return body, plain


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=anthropic_request())
def test_every_anthropic_message_shape_is_answered_or_refused_clearly(
    local_gateway: Gateway, request: tuple[dict[str, Any], bool]
) -> None:
    body, plain = request
    response = post(local_gateway, "/v1/messages", body)
    assert_answered_or_refused(response, plain)
    if response.status_code >= 400:
        assert response.json()["type"] == "error"
    counted = post(local_gateway, "/v1/messages/count_tokens", {k: v for k, v in body.items() if k != "max_tokens"})
    assert counted.status_code == 200, counted.text


# -- OpenAI Responses -------------------------------------------------------------------------------

R_TEXT = st.builds(lambda t: {"type": "input_text", "text": t}, TEXT)
R_IMAGE = st.just({"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="})


@st.composite
def responses_input(draw: st.DrawFn) -> tuple[Any, bool]:
    if draw(st.booleans()):
        return draw(TEXT), True
    items: list[dict[str, Any]] = []
    tools = False
    for _ in range(draw(st.integers(0, 2))):
        items.append({"role": "user", "content": draw(st.one_of(TEXT, st.lists(R_TEXT, min_size=1, max_size=3)))})
        if draw(st.booleans()):
            text = draw(TEXT)
            items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
        else:
            items.append({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"})
            items.append({"type": "function_call_output", "call_id": "c1", "output": draw(TEXT)})
            tools = True
    last = draw(st.lists(st.one_of(R_TEXT, R_IMAGE), min_size=1, max_size=3))
    items.append({"role": "user", "content": last})
    return items, not tools and all(part["type"] == "input_text" for part in last)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=responses_input(), instructions=st.one_of(st.none(), TEXT))
def test_every_responses_input_shape_is_answered_or_refused_clearly(
    local_gateway: Gateway, request: tuple[Any, bool], instructions: str | None
) -> None:
    given_input, plain = request
    body: dict[str, Any] = {"model": "auto", "input": given_input, "max_output_tokens": 16}
    if instructions is not None:
        body["instructions"] = instructions
    response = post(local_gateway, "/v1/responses", body)
    assert_answered_or_refused(response, plain)


def test_embeddings_and_text_completions_take_their_shapes_too(local_gateway: Gateway) -> None:
    completion = post(local_gateway, "/v1/completions", {"model": "auto", "prompt": ["Hello"], "max_tokens": 1})
    assert completion.status_code == 200, completion.text
    embedded = post(local_gateway, "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": ["a", "b"]})
    assert embedded.status_code == 200, embedded.text
    assert [len(row["embedding"]) for row in embedded.json()["data"]] == [384, 384]
    as_json = json.dumps(embedded.json())
    assert "NaN" not in as_json
