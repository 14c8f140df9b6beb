"""What a cloud answer carries beyond its text reaches the client unchanged, through both remote engines
(litellm and the direct OpenAI-compatible client): token log-probabilities, streamed and not."""

from __future__ import annotations

import openai

from tests.conftest import FaultyCloud, Gateway


def test_logprobs_from_the_cloud_reach_the_client(resilient_gateway: Gateway, faulty_cloud: FaultyCloud) -> None:
    client = openai.OpenAI(base_url=resilient_gateway.v1, api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=1
    )
    answer = raw.parse()
    assert raw.headers["x-router-needs"] == "logprobs" and raw.headers["x-router-route"] == "cloud"
    tokens = answer.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == answer.choices[0].message.content
    assert [t.logprob for t in tokens] == [-0.25 * (i + 1) for i in range(len(tokens))]

    stream = client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}], logprobs=True, stream=True
    )
    streamed = [t for chunk in stream if chunk.choices and chunk.choices[0].logprobs for t in
                chunk.choices[0].logprobs.content]  # fmt: skip
    assert [t.token for t in streamed] == [t.token for t in tokens]
