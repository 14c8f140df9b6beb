"""The dashboard in a real headless Chromium: it renders with data and shows what the stats endpoint says."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import Gateway

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE_TENANT = '<img src=x onerror="document.body.dataset.pwned=1">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed: `make test` installs Debian's package"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        yield browser
        browser.close()


def test_dashboard_renders_the_savings_the_stats_endpoint_reports(ledger_gateway: Gateway, browser: Browser) -> None:
    client = openai.OpenAI(base_url=ledger_gateway.v1, api_key="unused", max_retries=0)
    hi = [{"role": "user", "content": "Say hi."}]
    for _ in range(3):
        client.chat.completions.create(model="local", messages=hi, max_tokens=4)
    client.chat.completions.create(model="auto", messages=hi, max_tokens=4, extra_headers={"x-team": "research"})
    client.chat.completions.create(model="local", messages=hi, max_tokens=4, extra_headers={"x-team": HOSTILE_TENANT})
    stats = httpx.get(f"{ledger_gateway.v1}/router/stats", params={"window": "1h"}).json()
    assert stats["totals"]["savings_usd"] > 0

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{ledger_gateway.url}/dashboard?window=1h")
    page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    expected = page.evaluate(f"usd({stats['totals']['savings_usd']})")
    assert page.text_content("#kpi-savings") == expected
    assert expected.startswith("$") and expected != "$0.0"
    assert page.text_content("#kpi-requests") == "5"
    assert page.text_content("#kpi-local") == f"{100 * stats['routes']['local']['share']:.1f}%"
    assert "research-team" in page.text_content("#table-escalations")
    assert page.locator("#chart-cost polyline").count() == 2
    assert page.locator("#chart-traffic rect").count() >= 1
    # A tenant name is data, never markup: it shows as text and runs nothing.
    assert HOSTILE_TENANT in page.text_content("#table-tenants")
    assert page.locator("#table-tenants img").count() == 0
    assert "openai-sdk" in page.text_content("#table-clients")  # traffic by client program
    assert page.evaluate("document.body.dataset.pwned") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.close()


def test_dashboard_asks_for_a_key_when_the_gateway_needs_one(strict_gateway: Gateway, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{strict_gateway.url}/dashboard")
    page.wait_for_selector("#auth", state="visible", timeout=30_000)
    assert "needs an API key" in page.text_content("#status")
    page.close()
