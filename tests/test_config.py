"""The gateway YAML: defaults, validation with line numbers, API keys from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import DEFAULT_LOCAL_MODEL, GatewayConfig, load_gateway_config, parse_api_keys
from router.errors import ConfigError


def test_embedded_defaults_need_no_file() -> None:
    config = load_gateway_config(None)
    assert config.routes.local == DEFAULT_LOCAL_MODEL
    local = config.models[DEFAULT_LOCAL_MODEL]
    assert local.engine == "llama-cpp" and local.package == "qwen2.5-coder-1.5b-instruct"
    assert config.server.unknown_models == "route"


def test_invalid_config_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  m:\n    engine: llama-cpp\n    n_ctx: lots\nroutes:\n  local: m\n  cloud: null\n")
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(path)
    assert f"{path}:4: models.m.n_ctx: Input should be a valid integer" in str(caught.value)


def test_routes_must_name_configured_models() -> None:
    with pytest.raises(ValueError, match=r"routes.local names `nope`"):
        GatewayConfig.model_validate({"routes": {"local": "nope"}})


def test_aliases_must_point_somewhere() -> None:
    with pytest.raises(ValueError, match=r"alias `x` points to `y`"):
        GatewayConfig.model_validate({"aliases": {"x": "y"}})


def test_one_api_base_is_accepted_as_a_pool_of_one() -> None:
    config = GatewayConfig.model_validate(
        {
            "models": {"p": {"engine": "openai-compatible", "model": "m", "api_base": "http://h/v1"}},
            "routes": {"local": "p", "cloud": None},
        }
    )
    assert config.models["p"].api_base == ["http://h/v1"]


def test_api_keys_parse_with_and_without_tenants() -> None:
    assert parse_api_keys("team-a:sk-1, sk-2,") == {"sk-1": "team-a", "sk-2": "key-2"}
    assert parse_api_keys(None) == {}


def test_the_example_config_is_valid() -> None:
    config = load_gateway_config(Path(__file__).resolve().parents[1] / "router.example.yaml")
    assert config.routes.cloud == ["gpt-4o-mini"]
