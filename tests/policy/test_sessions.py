"""Sticky sessions: a conversation the cloud answered stays on the cloud, on one replica or across two.

The gateways are `router serve` processes whose local tier (a one-server pool) and cloud (through
litellm) are the fault-injecting stand-in, a real OpenAI-compatible server; the shared state is a real
Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from router.config import GatewayConfig
from router.errors import PolicyError
from router.policy import parse_policy
from router.policy.facts import Facts
from router.routing import Router
from router.sessions import session_keys
from router.types import Findings, RequestContext
from tests.conftest import FaultyCloud, Gateway, config_gateway, stand_in_config
from tests.servers import RedisServer

POLICY = """\
default:
  route: local
  session: sticky
rules:
  - name: proofs
    when: {keywords: [prove]}
    route: cloud
"""
FIRST = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Prove that 7 is prime."}]
SECOND = [
    *FIRST,
    {"role": "assistant", "content": "7 has no divisors but 1 and 7."},
    {"role": "user", "content": "And 9?"},
]


def _ctx(messages: list[dict], **kw: object) -> RequestContext:
    return RequestContext("r", "chat", "auto", tuple(messages), **kw)  # type: ignore[arg-type]


def test_a_turn_is_known_by_the_conversation_before_it() -> None:
    assert session_keys(_ctx(SECOND))[0] == session_keys(_ctx(FIRST))[1]
    other_answer = [*FIRST, {"role": "assistant", "content": "Whatever."}, {"role": "user", "content": "And 9?"}]
    assert session_keys(_ctx(other_answer))[0] == session_keys(_ctx(FIRST))[1]  # answers differ by model
    assert session_keys(_ctx(SECOND, tenant="b"))[0] != session_keys(_ctx(FIRST, tenant="a"))[1]
    given = {"x-session-id": "abc"}
    assert session_keys(_ctx(SECOND, headers=given))[0] == session_keys(_ctx([FIRST[0]], headers=given))[1]


def test_a_sticky_default_follows_an_escalated_conversation() -> None:
    router = Router(GatewayConfig(), parse_policy(POLICY, "p.yaml", GatewayConfig().models))
    assert router.decide(Facts(_ctx(SECOND))).route == "local"
    escalated = router.decide(Facts(_ctx(SECOND), Findings(session_escalated=True)))
    assert (escalated.route, escalated.reason) == ("cloud", "sticky-session")


def test_a_pinned_rule_cannot_be_sticky() -> None:
    with pytest.raises(PolicyError, match="a pinned rule never leaves its route"):
        parse_policy(
            "rules:\n  - name: r\n    when: {keywords: [a]}\n    route: local\n    pin: true\n    session: sticky\n",
            "p.yaml",
            GatewayConfig().models,
        )


def _gateway(stack: ExitStack, tmp: Path, cloud: FaultyCloud, redis_url: str = "") -> Gateway:
    config = stand_in_config(cloud.v1, tmp / "ledger.sqlite", cache={"enabled": False})
    return stack.enter_context(config_gateway(tmp, config, POLICY, redis_url))


@pytest.fixture(scope="module")
def replicas(
    faulty_cloud_session: FaultyCloud, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    tmp = tmp_path_factory.mktemp("sessions")
    with ExitStack() as stack:
        yield (
            _gateway(stack, tmp / "a", faulty_cloud_session, redis_server.url),
            _gateway(stack, tmp / "b", faulty_cloud_session, redis_server.url),
        )


def _route(gw: Gateway, messages: list[dict], headers: dict | None = None) -> tuple[str, str]:
    client = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages, extra_headers=headers)
    return raw.headers["x-router-route"], raw.headers["x-router-reason"]


def test_later_turns_stay_on_the_cloud_on_any_replica(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    fresh = [{"role": "user", "content": "And 9? (a conversation of its own)"}]
    assert _route(a, fresh) == ("local", "default")
    assert _route(a, FIRST) == ("cloud", "proofs")
    assert _route(b, SECOND) == ("cloud", "sticky-session")  # the other replica knows, through Redis
    third = [*SECOND, {"role": "assistant", "content": "9 = 3 x 3."}, {"role": "user", "content": "Thanks!"}]
    assert _route(a, third) == ("cloud", "sticky-session")  # and it keeps going
    assert _route(b, fresh) == ("local", "default")


def test_a_session_header_ties_turns_together(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    session = {"x-session-id": "ticket-4711"}
    assert _route(a, [{"role": "user", "content": "Hello there"}], session) == ("local", "default")
    assert _route(a, [{"role": "user", "content": "Please prove it"}], session) == ("cloud", "proofs")
    assert _route(b, [{"role": "user", "content": "Hello again"}], session) == ("cloud", "sticky-session")
    assert _route(b, [{"role": "user", "content": "Hello again"}], {"x-session-id": "another"}) == ("local", "default")
