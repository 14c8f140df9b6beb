"""Price a request twice: what it cost as served, and what it would have cost on the reference cloud model.

Prices come from litellm's cost map (`LITELLM_LOCAL_MODEL_COST_MAP=True`: the map shipped in the
package, never fetched). A model's `price:` in the config overrides it; a local model without one
costs nothing. Flat per-token rates are read from the map once per model; models with tiered prices
(e.g. above 128k tokens) are priced by `litellm.cost_per_token` on every request instead.

The counterfactual assumes the reference model would have read the same prompt and written as many
tokens as were actually produced (counted by the model that served the request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.config import GatewayConfig, LiteLLMModel, OpenAICompatibleModel, Price
from router.types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rates:
    input_per_token: float
    output_per_token: float
    per_second: float = 0.0

    def cost(self, usage: Usage, seconds: float = 0.0) -> float:
        return (
            usage.prompt_tokens * self.input_per_token
            + usage.completion_tokens * self.output_per_token
            + seconds * self.per_second
        )


FREE = Rates(0.0, 0.0)
Priced = Callable[[Usage, float], float]


def _from_price(price: Price) -> Rates:
    return Rates(price.input_per_1k_usd / 1000, price.output_per_1k_usd / 1000, price.per_second_usd)


def litellm_pricer(litellm: Any, model: str) -> Priced | None:
    """A pricing function from litellm's cost map for `model`, or None when the map does not know it."""
    try:
        info = litellm.get_model_info(model=model)
    except Exception:
        return None
    tiered = any("above" in key and value for key, value in info.items() if key.endswith("_cost_per_token"))
    if tiered:

        def priced(usage: Usage, seconds: float = 0.0) -> float:
            prompt, completion = litellm.cost_per_token(
                model=model, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            )
            return prompt + completion

        return priced
    rates = Rates(info.get("input_cost_per_token") or 0.0, info.get("output_cost_per_token") or 0.0)
    return rates.cost


class Pricer:
    """Prices per configured model; built once at start-up (it needs litellm imported)."""

    def __init__(self, config: GatewayConfig, litellm: Any | None) -> None:
        self._prices: dict[str, Priced] = {}
        for name, spec in config.models.items():
            self._prices[name] = self._pricing_for(name, spec, litellm)
        cloud = config.routes.cloud
        self.reference_model = config.ledger.reference_model or (cloud[0] if cloud else None)

    @staticmethod
    def _pricing_for(name: str, spec: Any, litellm: Any | None) -> Priced:
        if spec.price is not None:
            return _from_price(spec.price).cost
        if isinstance(spec, LiteLLMModel | OpenAICompatibleModel) and litellm is not None:
            model = spec.model if isinstance(spec, LiteLLMModel) else f"openai/{spec.model}"
            if (priced := litellm_pricer(litellm, model)) is not None:
                return priced
            if spec.tier == "cloud":
                log.warning("no price known for %s (%s): set `price:` in the config; counting it as free", name, model)
        return FREE.cost

    def cost(self, model: str, usage: Usage, seconds: float = 0.0) -> float:
        return self._prices.get(model, FREE.cost)(usage, seconds)

    def counterfactual(self, usage: Usage) -> float:
        """What the request would have cost on the reference cloud model."""
        if self.reference_model is None:
            return 0.0
        return self._prices[self.reference_model](usage, 0.0)
