"""Shadow evaluation through real gateways: what is never shadowed, the daily cap, replicas sharing
judgements, and the quality the stats and the dashboard show.

Each gateway is a `router serve` process; its local tier, its cloud (through litellm) and its judge are
three fault-injecting stand-ins, real OpenAI-compatible servers whose own logs say who was asked what.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser

from tests.conftest import CLOUD_KEY_ENV, FaultyCloud, Gateway, config_gateway
from tests.dashboard.test_dashboard_page import ARTIFACTS, browser  # noqa: F401  (the headless Chromium fixture)
from tests.servers import RedisServer, faulty_cloud_args, free_port, running

POLICY = """\
version: 1
default:
  route: local
rules:
  - name: private
    when: {headers: {x-private: "yes"}}
    route: local
    shadow: false
  - name: pinned
    when: {headers: {x-pin: "yes"}}
    route: local
    pin: true
  - name: mail
    when: {headers: {x-mail: "yes"}}
    route: local
    redact: [email]
"""
JUDGE_REPLY = "reference: 9\ncandidate: 6"


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FaultyCloud]]:
    """Three stand-ins of the module's own: the local tier, the cloud, and the judge."""
    tmp = tmp_path_factory.mktemp("standins")
    with ExitStack() as stack:
        found = {}
        for name in ("local", "cloud", "judge"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(running(faulty_cloud_args(port), f"{url}/v1/models", tmp / f"{name}.log"))
            found[name] = FaultyCloud(url)
        found["judge"].set("ok", answer=JUDGE_REPLY)
        yield found


def _config(standins: dict[str, FaultyCloud], ledger: Path, shadow: dict, cloud_price: float = 0.0) -> dict:
    cloud = {"engine": "litellm", "api_key_env": CLOUD_KEY_ENV}
    price = {"price": {"input_per_1k_usd": cloud_price, "output_per_1k_usd": cloud_price}} if cloud_price else {}
    return {
        "models": {
            "local-pool": {"engine": "openai-compatible", "model": "stand-in", "api_base": [standins["local"].v1]},
            "gpt-4o-mini": {**cloud, "model": "openai/gpt-4o-mini", "api_base": standins["cloud"].v1, **price},
            "judge": {**cloud, "model": "openai/judge", "api_base": standins["judge"].v1,
                      "price": {"input_per_1k_usd": 0.0001, "output_per_1k_usd": 0.0001}},
        },
        "routes": {"local": "local-pool", "cloud": "gpt-4o-mini"},
        "cache": {"enabled": False},
        "ledger": {"path": str(ledger)},
        "shadow": {"judge": "judge", "concurrency": 1, **shadow},
    }  # fmt: skip


def _gateway(stack: ExitStack, tmp: Path, config: dict, redis_url: str = "") -> Gateway:
    return stack.enter_context(config_gateway(tmp, config, POLICY, redis_url))


def _ask(gw: Gateway, text: str, headers: dict | None = None) -> str:
    client = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], extra_headers=headers
    )
    assert raw.http_response.status_code == 200
    return raw.headers["x-router-route"]


def _settled(gw: Gateway, timeout_s: float = 30) -> dict:
    """The quality part of the stats once no shadow job is queued or in flight."""
    deadline = time.monotonic() + timeout_s
    while True:
        quality = httpx.get(f"{gw.v1}/router/stats", params={"window": "1h"}, timeout=10).json()["quality"]
        if quality["shadow"].get("pending", 0) == 0 or time.monotonic() > deadline:
            return quality
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shadowed(standins: dict[str, FaultyCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Every local answer shadowed (share 1.0)."""
    tmp = tmp_path_factory.mktemp("shadowed")
    with ExitStack() as stack:
        yield _gateway(stack, tmp, _config(standins, tmp / "ledger.sqlite", {"share": 1.0, "min_samples": 3}))


def test_pinned_and_private_requests_never_reach_the_cloud(shadowed: Gateway, standins: dict) -> None:
    cloud = standins["cloud"]
    cloud.reset()
    for i in range(4):
        assert _ask(shadowed, f"private question {i}", {"x-private": "yes"}) == "local"
        assert _ask(shadowed, f"pinned question {i}", {"x-pin": "yes"}) == "local"
    quality = _settled(shadowed)
    assert cloud.requests() == []  # the stand-in cloud's own log: nobody asked it anything
    assert quality["shadow"]["jobs"].get("queued", 0) == 0
    # The same gateway does shadow an ordinary request: the silence above was the rules' doing.
    assert _ask(shadowed, "an ordinary question") == "local"
    quality = _settled(shadowed)
    assert [r["messages"][-1]["content"] for r in cloud.requests()] == ["an ordinary question"]
    assert quality["methods"].get("identical", 0) >= 1  # both stand-ins gave the canned answer: no judge needed


def test_a_shadow_call_is_redacted_as_the_rule_says(shadowed: Gateway, standins: dict) -> None:
    cloud = standins["cloud"]
    cloud.reset()
    assert _ask(shadowed, "Write to jane.doe@example.com and say hi.", {"x-mail": "yes"}) == "local"
    _settled(shadowed)
    sent = [r["messages"][-1]["content"] for r in cloud.requests()]
    assert len(sent) == 1
    assert "jane.doe@example.com" not in sent[0] and "Write to" in sent[0]


def test_answers_that_differ_go_to_the_judge(shadowed: Gateway, standins: dict) -> None:
    standins["cloud"].set("ok", answer="Paris is the capital of France.")
    judge = standins["judge"]
    judge.reset()
    judge.set("ok", answer=JUDGE_REPLY)
    try:
        before = _settled(shadowed)["methods"].get("judge", 0)
        assert _ask(shadowed, "What is the capital of France?") == "local"
        quality = _settled(shadowed)
    finally:
        standins["cloud"].reset()
    assert quality["methods"].get("judge", 0) == before + 1
    graded = judge.requests()[-1]["messages"]
    assert "reference:" in graded[0]["content"]  # the rubric
    assert "Paris is the capital of France." in graded[1]["content"]  # the reference's answer
    assert "Hello from the stand-in cloud." in graded[1]["content"]  # the local answer


def test_the_daily_cap_stops_shadow_calls(standins: dict, tmp_path: Path) -> None:
    cloud = standins["cloud"]
    cloud.reset()
    # One reference call costs more than the day's cap: after it, nothing more is sent.
    config = _config(standins, tmp_path / "ledger.sqlite", {"share": 1.0, "max_usd_per_day": 0.01}, cloud_price=50.0)
    with ExitStack() as stack:
        gw = _gateway(stack, tmp_path, config)
        for i in range(6):
            assert _ask(gw, f"question number {i}") == "local"
        quality = _settled(gw)
    assert len(cloud.requests()) == 1
    assert quality["shadow"]["spent_usd_today"] > 0.01
    assert quality["shadow"]["jobs"].get("budget", 0) >= 1
    assert quality["overall"]["judged"] == 1


def test_replicas_share_their_judgements_through_redis(
    standins: dict, redis_server: RedisServer, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a = _gateway(stack, tmp_path / "a", _config(standins, tmp_path / "a.sqlite", {"share": 1.0}), redis_server.url)
        b = _gateway(stack, tmp_path / "b", _config(standins, tmp_path / "b.sqlite", {"share": 0.0}), redis_server.url)
        before = _settled(b)["overall"]["judged"]
        for i in range(3):
            assert _ask(a, f"replica question {i}") == "local"
        judged_on_a = _settled(a)["overall"]["judged"]
        judged_on_b = _settled(b)["overall"]["judged"]
    assert judged_on_a == judged_on_b == before + 3  # b shadowed nothing and has its own SQLite file


def test_the_dashboard_shows_quality_beside_the_savings(shadowed: Gateway, browser: Browser) -> None:  # noqa: F811
    for i in range(4):
        assert _ask(shadowed, f"dashboard question {i}") == "local"
    _ask(shadowed, "one private question", {"x-private": "yes"})
    quality = _settled(shadowed)
    overall = quality["overall"]
    assert overall["judged"] >= 4 and "quality_retained" in overall
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{shadowed.url}/dashboard?window=1h")
    page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    assert page.text_content("#kpi-quality") == page.evaluate(f"pct({overall['quality_retained']})")
    assert f"{overall['judged']} judged" in page.text_content("#kpi-quality-sub")
    assert "of cloud quality" in page.text_content("#kpi-savings-sub")
    table = page.text_content("#table-quality")
    assert "rule default" in table  # the default route's answers were judged
    assert "rule private" not in table  # private requests never were
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-quality.png"), full_page=True)
    page.close()


def test_auto_calibration_shows_in_the_policy_endpoint(standins: dict, tmp_path: Path) -> None:
    config = _config(standins, tmp_path / "ledger.sqlite", {"share": 1.0})
    config["auto_calibrate"] = {"quality_target": 0.9, "min_samples": 10, "interval_s": 1}
    with ExitStack() as stack:
        gw = _gateway(stack, tmp_path, config)
        (tmp_path / "policy.yaml").write_text("version: 1\ndefault: {route: auto, threshold: 0.7}\n")  # hot reload
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(f"{gw.v1}/router/policy", timeout=10).json()
            entry = body["thresholds"].get("default", {})
            if "note" in entry:
                break
            time.sleep(0.3)
    assert body["auto_calibrate"]["quality_target"] == 0.9
    assert entry["written"] == 0.7 and entry["live"] == 0.7
    assert entry["note"] == "waiting for judgements (0 of 10)"


def test_a_reference_without_its_key_shadows_nothing_and_says_so(standins: dict, tmp_path: Path) -> None:
    cloud = standins["cloud"]
    cloud.reset()
    config = _config(standins, tmp_path / "ledger.sqlite", {"share": 1.0, "reference": "keyless"})
    # A provider model with no key (and no api_base of its own, which might need none) cannot answer.
    config["models"]["keyless"] = {"engine": "litellm", "model": "openai/gpt-4.1", "api_key_env": "NO_SUCH_KEY_ENV"}
    with ExitStack() as stack:
        gw = _gateway(stack, tmp_path, config)
        assert _ask(gw, "a question for nobody") == "local"
        quality = _settled(gw)
        log = gw.log.read_text()
    assert quality["shadow"]["jobs"] == {"unavailable": 1}
    assert cloud.requests() == []
    assert "the reference model keyless cannot answer" in log
