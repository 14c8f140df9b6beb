"""Price a request twice: what it cost as served, and what it would have cost on the reference cloud model.

Prices come from litellm's cost map: the JSON file shipped in the litellm package, read directly (never
fetched, and without importing litellm, which costs ~3 s of start-up on two cores). A model's `price:`
in the config overrides it; a local model without one costs nothing. Flat per-token rates are read
from the map once per model; models with tiered prices (e.g. above 128k tokens) are priced by
`litellm.cost_per_token` on every request instead, and only they make the gateway import litellm.

The counterfactual assumes the reference model would have read the same prompt and written as many
tokens as were actually produced (counted by the model that served the request).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.config import GatewayConfig, LiteLLMModel, OpenAICompatibleModel, Price
from router.types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rates:
    input_per_token: float
    output_per_token: float
    per_second: float = 0.0
    cache_read_per_token: float | None = None
    """Prompt-cache reads (Anthropic bills a tenth of the input price, OpenAI a half or less); None: input."""
    cache_write_per_token: float | None = None

    def cost(self, usage: Usage, seconds: float = 0.0) -> float:
        read = self.input_per_token if self.cache_read_per_token is None else self.cache_read_per_token
        write = self.input_per_token if self.cache_write_per_token is None else self.cache_write_per_token
        uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
        return (
            uncached * self.input_per_token
            + usage.cached_tokens * read
            + usage.cache_write_tokens * write
            + usage.completion_tokens * self.output_per_token
            + seconds * self.per_second
        )


FREE = Rates(0.0, 0.0)
Priced = Callable[[Usage, float], float]


def _per_token(per_1k: float | None) -> float | None:
    return None if per_1k is None else per_1k / 1000


def _from_price(price: Price) -> Rates:
    return Rates(price.input_per_1k_usd / 1000, price.output_per_1k_usd / 1000, price.per_second_usd,
                 _per_token(price.cached_input_per_1k_usd), _per_token(price.cache_write_per_1k_usd))  # fmt: skip


COST_MAP_FILE = "model_prices_and_context_window_backup.json"
EMBEDDING_REFERENCE = "text-embedding-3-small"
"""What a local embedding is priced against as its cloud counterfactual."""


@functools.cache
def _cost_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / COST_MAP_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("litellm's cost map %s could not be read; cloud models count as free", path)
        return {}


def cost_map_entry(model: str) -> dict[str, Any] | None:
    """The cost map's entry for a litellm model string (`openai/gpt-4o-mini` or `gpt-4o-mini`)."""
    table = _cost_map()
    for key in (model, model.split("/", 1)[-1]):
        if isinstance(entry := table.get(key), dict) and key != "sample_spec":
            return entry
    return None


def map_pricer(model: str, load_litellm: Callable[[], Any]) -> Priced | None:
    """A pricing function from the cost map for `model`, or None when the map does not know it."""
    info = cost_map_entry(model)
    if info is None:
        return None
    tiered = any("above" in key and value for key, value in info.items() if key.endswith("_cost_per_token"))
    if tiered:
        litellm = load_litellm()

        def priced(usage: Usage, seconds: float = 0.0) -> float:
            prompt, completion = litellm.cost_per_token(
                model=model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cache_read_input_tokens=usage.cached_tokens,
                cache_creation_input_tokens=usage.cache_write_tokens,
            )
            return prompt + completion

        return priced
    rates = Rates(
        info.get("input_cost_per_token") or 0.0,
        info.get("output_cost_per_token") or 0.0,
        cache_read_per_token=info.get("cache_read_input_token_cost"),
        cache_write_per_token=info.get("cache_creation_input_token_cost"),
    )
    return rates.cost


class Pricer:
    """Prices per configured model; built once at start-up. `load_litellm` is called only for a model
    with tiered prices."""

    def __init__(self, config: GatewayConfig, load_litellm: Callable[[], Any]) -> None:
        self._prices: dict[str, Priced] = {}
        for name, spec in config.models.items():
            self._prices[name] = self._pricing_for(name, spec, load_litellm)
        cloud = config.routes.cloud
        self.reference_model = config.ledger.reference_model or (cloud[0] if cloud else None)

    @staticmethod
    def _pricing_for(name: str, spec: Any, load_litellm: Callable[[], Any]) -> Priced:
        if spec.price is not None:
            return _from_price(spec.price).cost
        if isinstance(spec, LiteLLMModel | OpenAICompatibleModel):
            model = spec.model if isinstance(spec, LiteLLMModel) else f"openai/{spec.model}"
            if (priced := map_pricer(model, load_litellm)) is not None:
                return priced
            if spec.tier == "cloud":
                log.warning("no price known for %s (%s): set `price:` in the config; counting it as free", name, model)
        return FREE.cost

    def cost(self, model: str, usage: Usage, seconds: float = 0.0) -> float:
        return self._prices.get(model, FREE.cost)(usage, seconds)

    def embedding_counterfactual(self, usage: Usage) -> float:
        """What embedding these tokens would have cost on OpenAI's `text-embedding-3-small`."""
        entry = cost_map_entry(EMBEDDING_REFERENCE) or {}
        return usage.prompt_tokens * float(entry.get("input_cost_per_token") or 0.0)

    def counterfactual(self, usage: Usage) -> float:
        """What the request would have cost on the reference cloud model."""
        if self.reference_model is None:
            return 0.0
        return self._prices[self.reference_model](usage, 0.0)
