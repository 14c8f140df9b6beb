"""A known mix of requests through a real gateway: the ledger, /v1/router/stats and /metrics agree exactly."""

from __future__ import annotations

import httpx
import openai
import pytest

from router.backends.litellm_backend import import_litellm
from tests.conftest import Gateway

HI = [{"role": "user", "content": "Say hi."}]


def price(usage) -> float:
    """gpt-4o-mini's price for this usage, by litellm's own cost function (the stand-in is priced as it)."""
    prompt, completion = import_litellm().cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
    )
    return prompt + completion


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_a_known_mix_is_priced_and_counted_exactly(ledger_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=ledger_gateway.v1, api_key="unused", max_retries=0)
    local_usages, cloud_usages, header_costs, header_savings = [], [], [], []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="local", messages=HI, max_tokens=3)
        local_usages.append(raw.parse().usage)
        header_costs.append(float(raw.headers["x-router-cost-usd"]))
        header_savings.append(float(raw.headers["x-router-saved-usd"]))
    stream = client.chat.completions.create(
        model="local", messages=HI, max_tokens=3, stream=True, stream_options={"include_usage": True}
    )
    local_usages.append(list(stream)[-1].usage)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=HI, max_tokens=3, extra_headers={"x-team": "research"}
        )
        assert raw.headers["x-router-route"] == "cloud"
        cloud_usages.append(raw.parse().usage)
        header_costs.append(float(raw.headers["x-router-cost-usd"]))
        header_savings.append(float(raw.headers["x-router-saved-usd"]))

    cloud_cost = sum(price(u) for u in cloud_usages)
    counterfactual = sum(price(u) for u in local_usages + cloud_usages)
    # Headers of the non-streamed answers: a local answer costs 0 and saves its cloud price.
    assert header_costs == [0.0, 0.0] + [pytest.approx(price(u), abs=1e-8) for u in cloud_usages]
    assert header_savings[:2] == [pytest.approx(price(u), abs=1e-8) for u in local_usages[:2]]
    assert header_savings[2:] == [pytest.approx(0.0, abs=1e-8)] * 2

    stats = httpx.get(f"{ledger_gateway.v1}/router/stats", params={"window": "1h"}).json()
    totals = stats["totals"]
    assert stats["reference_model"] == "gpt-4o-mini"
    assert totals["requests"] == 5
    assert totals["errors"] == 0
    assert totals["prompt_tokens"] == sum(u.prompt_tokens for u in local_usages + cloud_usages)
    assert totals["completion_tokens"] == sum(u.completion_tokens for u in local_usages + cloud_usages)
    assert totals["cost_usd"] == pytest.approx(cloud_cost, abs=1e-8)
    assert totals["counterfactual_usd"] == pytest.approx(counterfactual, abs=1e-8)
    assert totals["savings_usd"] == pytest.approx(counterfactual - cloud_cost, abs=1e-8)
    assert stats["routes"]["local"]["requests"] == 3
    assert stats["routes"]["cloud"]["requests"] == 2
    assert stats["routes"]["local"]["share"] == 0.6
    assert stats["routes"]["local"]["latency_p50_ms"] > 0
    assert stats["escalations"][0]["reason"] == "research-team"
    assert stats["escalations"][0]["requests"] == 2
    assert {t["tenant"]: t["requests"] for t in stats["tenants"]} == {"-": 3, "research": 2}
    assert sum(point["requests"] for point in stats["series"]) == 5
    # By client program, from rows of their own: the official SDK's five calls, the same totals.
    [sdk] = stats["clients"]
    assert (sdk["client"], sdk["requests"], sdk["routes"], sdk["apis"]) == (
        "openai-sdk",
        5,
        {"local": 3, "cloud": 2},
        ["chat"],
    )
    assert sdk["savings_usd"] == pytest.approx(totals["savings_usd"], abs=1e-8)

    text = httpx.get(f"{ledger_gateway.url}/metrics").text
    local, cloud = {"route": "local", "model": "gemma-3-270m"}, {"route": "cloud", "model": "gpt-4o-mini"}
    assert metric_value(text, "router_requests_total", **local, rule="requested-model", status="200") == 3
    assert metric_value(text, "router_requests_total", **cloud, rule="research-team", status="200") == 2
    assert metric_value(text, "router_escalations_total", reason="research-team") == 2
    assert metric_value(text, "router_cost_usd_total", **cloud) == pytest.approx(cloud_cost, abs=1e-12)
    assert metric_value(text, "router_cost_usd_total", **local) == 0
    local_counterfactual = sum(price(u) for u in local_usages)
    assert metric_value(text, "router_savings_usd_total", route="local") == pytest.approx(local_counterfactual)
    assert metric_value(text, "router_tokens_total", **local, kind="completion") == sum(
        u.completion_tokens for u in local_usages
    )
    assert metric_value(text, "router_time_to_first_token_seconds_count", route="local") == 3


def test_a_bad_window_is_a_clear_error(ledger_gateway: Gateway) -> None:
    response = httpx.get(f"{ledger_gateway.v1}/router/stats", params={"window": "forever"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "window"


def test_router_stats_prints_the_savings_table_from_the_same_ledger(ledger_gateway: Gateway) -> None:
    import json
    import subprocess
    import sys

    expected = httpx.get(f"{ledger_gateway.v1}/router/stats", params={"window": "1h"}).json()  # also flushes
    config = ledger_gateway.log.parent / "router.yaml"

    def router_stats(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "router", "stats", "--config", str(config), "--window", "1h", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    table = router_stats("--by", "tenant")
    assert table.returncode == 0, table.stderr
    assert f"requests {expected['totals']['requests']}  errors 0" in table.stdout
    research = next(line for line in table.stdout.splitlines() if line.startswith("research "))
    assert research.split()[1] == "2"
    as_json = json.loads(router_stats("--json").stdout)
    assert as_json["totals"] == expected["totals"]
    by_client = router_stats("--by", "client")
    assert by_client.returncode == 0, by_client.stderr
    sdk = next(line for line in by_client.stdout.splitlines() if line.startswith("openai-sdk"))
    assert sdk.split()[1:4] == [
        str(expected["clients"][0]["requests"]),
        *map(str, (expected["clients"][0]["routes"].get(r, 0) for r in ("local", "cloud"))),
    ]
    assert router_stats("--by", "colour").returncode == 2
