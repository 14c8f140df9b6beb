"""Pricing: litellm's numbers (its cost map, read directly) for cloud models, configured prices for local
ones, cache hits."""

from __future__ import annotations

import pytest

from router.backends.litellm_backend import import_litellm
from router.config import GatewayConfig
from router.ledger import Pricer
from router.ledger.pricing import map_pricer
from router.types import Decision, Served, Usage

litellm = import_litellm()
USAGE = Usage(prompt_tokens=1234, completion_tokens=567)


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_cloud_prices_match_litellms_own_cost_function(model: str) -> None:
    prompt, completion = litellm.cost_per_token(model=model, prompt_tokens=1234, completion_tokens=567)
    priced = map_pricer(model, lambda: litellm)
    assert priced is not None
    assert priced(USAGE, 0.0) == pytest.approx(prompt + completion, rel=1e-12)
    assert prompt + completion > 0


def config(**models: dict) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "models": {
                "local": {"engine": "llama-cpp", **models.get("local", {})},
                "cloud": {"engine": "litellm", "model": "openai/gpt-4o-mini"},
                "premium": {"engine": "litellm", "model": "openai/gpt-4o"},
            },
            "routes": {"local": "local", "cloud": ["cloud", "premium"]},
        }
    )


def test_a_local_model_costs_nothing_by_default_and_saves_the_reference_price() -> None:
    pricer = Pricer(config(), lambda: litellm)
    assert pricer.reference_model == "cloud"
    assert pricer.cost("local", USAGE) == 0.0
    expected = sum(litellm.cost_per_token(model="openai/gpt-4o-mini", prompt_tokens=1234, completion_tokens=567))
    assert pricer.counterfactual(USAGE) == pytest.approx(expected, rel=1e-12)


def test_a_configured_local_price_counts_tokens_and_seconds() -> None:
    price = {"input_per_1k_usd": 0.01, "output_per_1k_usd": 0.02, "per_second_usd": 0.001}
    pricer = Pricer(config(local={"price": price}), lambda: litellm)
    assert pricer.cost("local", USAGE, seconds=2.0) == pytest.approx(1.234 * 0.01 + 0.567 * 0.02 + 0.002)


def test_a_fallback_to_a_dearer_model_can_cost_more_than_the_reference() -> None:
    pricer = Pricer(config(), lambda: litellm)
    assert pricer.cost("premium", USAGE) > pricer.counterfactual(USAGE)


async def test_a_cache_hit_costs_nothing_and_saves_the_whole_counterfactual(tmp_path) -> None:
    from router.config import LedgerConfig
    from router.ledger import Ledger, SqliteLedgerStore
    from router.types import RequestContext

    ledger = Ledger(SqliteLedgerStore(tmp_path / "l.sqlite"), LedgerConfig())
    pricer = Pricer(config(), lambda: litellm)
    ledger.use_pricer(pricer)
    ctx = RequestContext("r", "chat", "auto", ({"role": "user", "content": "hi"},))
    served = Served(decision=Decision(route="cloud", model="cloud", reason="default"), model="cloud", route="cache")
    record = await ledger.price(ctx, served, USAGE, latency_ms=2.0, status=200)
    assert record.cost_usd == 0.0
    assert record.savings_usd == pytest.approx(pricer.counterfactual(USAGE))


async def test_an_abandoned_stream_is_priced_on_both_sides_from_the_same_tokens() -> None:
    """A user who presses stop on a cloud answer paid for what it streamed; the counterfactual is the same
    tokens on the reference model, not zero (which once showed every abandoned stream as a loss)."""
    from router.config import LedgerConfig
    from router.ledger import Ledger, SqliteLedgerStore
    from router.types import RequestContext

    ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
    ledger.use_pricer(Pricer(config(), lambda: litellm))
    ctx = RequestContext("r", "chat", "auto", ({"role": "user", "content": "hi"},))
    served = Served(Decision("cloud", "cloud", "default"), "cloud", "cloud")
    done = await ledger.price(ctx, served, USAGE, 100.0, 200)
    abandoned = await ledger.price(ctx, served, USAGE, 100.0, 499)
    assert abandoned.cost_usd == done.cost_usd > 0
    assert abandoned.counterfactual_usd == done.counterfactual_usd > 0
    assert abandoned.savings_usd == done.savings_usd >= 0


async def test_a_local_embedding_is_saved_against_the_cloud_embedding_price() -> None:
    from router.config import LedgerConfig
    from router.ledger import Ledger, SqliteLedgerStore
    from router.types import RequestContext

    ledger = Ledger(SqliteLedgerStore(":memory:"), LedgerConfig())
    ledger.use_pricer(Pricer(config(), lambda: litellm))
    ctx = RequestContext("r", "embeddings", "local", (), inputs=("a cat",))
    served = Served(Decision("local", "all-minilm-l6-v2", "embeddings"), "all-minilm-l6-v2", "local")
    record = await ledger.price(ctx, served, Usage(1000, 0), 5.0, 200)
    per_token = litellm.model_cost["text-embedding-3-small"]["input_cost_per_token"]
    assert record.cost_usd == 0 and record.counterfactual_usd == pytest.approx(1000 * per_token)
