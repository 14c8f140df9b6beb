"""A gateway for fuzzing: `router serve` with the default policy, whose local tier and cloud are the
instant fault-injecting stand-in (so valid requests are answered in milliseconds, not a model's time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from router.config import DEFAULT_POLICY_FILE
from tests.conftest import CLOUD_KEY_ENV, FaultyCloud, Gateway
from tests.servers import free_port, gateway_args, running


@pytest.fixture(scope="session")
def fuzz_gateway(faulty_cloud_session: FaultyCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = {
        "models": {
            "local-pool": {"engine": "openai-compatible", "model": "stand-in", "api_base": [faulty_cloud_session.v1]},
            "gpt-4o-mini": {
                "engine": "litellm",
                "model": "openai/gpt-4o-mini",
                "api_base": faulty_cloud_session.v1,
                "api_key_env": CLOUD_KEY_ENV,
            },
        },
        "routes": {"local": "local-pool", "cloud": "gpt-4o-mini"},
        "server": {"max_body_bytes": 256 * 1024},
        "ledger": {"path": str(tmp / "ledger.sqlite")},
    }
    path = tmp / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "gateway.log"
    env = {CLOUD_KEY_ENV: "sk-stand-in"}
    with running(gateway_args(port, path, Path(DEFAULT_POLICY_FILE)), f"http://127.0.0.1:{port}/readyz", log, env=env):
        yield Gateway(f"http://127.0.0.1:{port}", log)
