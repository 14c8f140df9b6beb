"""A fault-injecting cloud, and a gateway whose cloud models all point at it (breakers shared in Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import CLOUD_KEY_ENV, HERE, FaultyCloud, Gateway
from tests.servers import RedisServer, free_port, gateway_args, running

RESILIENCE_POLICY = HERE / "policies" / "resilience.yaml"
FAST_BACKOFF = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "max_retry_after_s": 5}


def _remote(engine: str, name: str, api_base: str) -> dict:
    """A cloud model on the stand-in, reached through litellm or through the direct OpenAI-compatible backend."""
    if engine == "litellm":
        return {"engine": "litellm", "api_key_env": CLOUD_KEY_ENV, "model": f"openai/{name}", "api_base": api_base}
    return {"engine": "openai-compatible", "tier": "cloud", "model": name, "api_base": [api_base]}


def resilient_config(path: Path, cloud_v1: str, engine: str = "litellm") -> Path:
    config = {
        "models": {
            "gemma-3-270m": {
                "engine": "llama-cpp",
                "package": "gemma-3-270m",
                "n_ctx": 2048,
                "n_threads": 1,
                "default_max_tokens": 8,
                "parallel": 1,  # one request fills it...
                "max_queue": 0,  # ...and the next hands over at once: saturation is easy to cause
            },
            "flaky": {
                **_remote(engine, "flaky", cloud_v1),
                "timeouts": {"connect_s": 1, "first_token_s": 1.5, "total_s": 2},
                "retries": {"attempts": 3, **FAST_BACKOFF},
                "breaker": {"consecutive_failures": 1000, "min_calls": 1000},
            },
            "fragile": {
                **_remote(engine, "fragile", cloud_v1),
                "retries": {"attempts": 1},
                "breaker": {"consecutive_failures": 3, "cooldown_s": 1.5, "min_calls": 1000},
            },
            # A provider that never answers a non-streamed call, under the default total_s (300 s): the
            # attempt's own bound (first_token_s + max_tokens at min_tokens_per_s) hands it on in time.
            "hung": {
                **_remote(engine, "hung", cloud_v1),
                "timeouts": {"first_token_s": 1, "min_tokens_per_s": 100},
                "retries": {"attempts": 1},
                "breaker": {"consecutive_failures": 1000, "min_calls": 1000},
            },
            "dead": {
                **_remote(engine, "dead", f"http://127.0.0.1:{free_port()}/v1"),  # nothing listens there
                "retries": {"attempts": 2, **FAST_BACKOFF},
                "breaker": {"consecutive_failures": 1000, "min_calls": 1000},
            },
        },
        "routes": {"local": "gemma-3-270m", "cloud": "flaky"},
        "ledger": {"path": str(path.parent / "ledger.sqlite"), "reference_model": "flaky"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session", params=["litellm", "openai-compatible"])
def resilient_gateway(
    request: pytest.FixtureRequest,
    faulty_cloud_session: FaultyCloud,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The same faults through both remote backends: litellm's, and the direct OpenAI-compatible one."""
    tmp = tmp_path_factory.mktemp("resilient")
    config = resilient_config(tmp / "router.yaml", faulty_cloud_session.v1, request.param)
    port = free_port()
    log = tmp / "gateway.log"
    env = {CLOUD_KEY_ENV: "sk-faulty", "ROUTER_REDIS_URL": redis_server.url}
    with running(gateway_args(port, config, RESILIENCE_POLICY), f"http://127.0.0.1:{port}/readyz", log, env=env):
        yield Gateway(f"http://127.0.0.1:{port}", log)
