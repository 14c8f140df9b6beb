"""Fixtures: the real default GGUF, a stand-in cloud (llama.cpp's OpenAI server), and real gateways."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from router.backends.model_files import default_gguf_path
from router.config import DEFAULT_POLICY_FILE, Settings
from tests.servers import RedisCluster, RedisServer, faulty_cloud_args, free_port, gateway_args, running

HERE = Path(__file__).parent
TEST_POLICY = HERE / "policies" / "test.yaml"
CLOUD_MODEL = "gpt-4o-mini"
CLOUD_KEY_ENV = "HYBRID_ROUTER_TEST_CLOUD_KEY"
API_KEY = "sk-router-test-key"


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/readyz", timeout=10).json()["local_model"]


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return default_gguf_path(Settings().model_dir)


@pytest.fixture(scope="session")
def stand_in_cloud(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server on 127.0.0.1 that answers as `gpt-4o-mini`."""
    port = free_port()
    log = tmp_path_factory.mktemp("cloud") / "cloud.log"
    args = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path), "--model_alias", CLOUD_MODEL, "--chat_format", "gemma",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
    ]  # fmt: skip
    with running(args, f"http://127.0.0.1:{port}/v1/models", log):
        yield f"http://127.0.0.1:{port}/v1"


def write_config(path: Path, cloud_base: str, **server: object) -> Path:
    config = {
        "models": {
            "gemma-3-270m": {
                "engine": "llama-cpp",
                "package": "gemma-3-270m",
                "n_ctx": 2048,
                "n_threads": 1,
                "default_max_tokens": 64,
            },
            CLOUD_MODEL: {
                "engine": "litellm",
                "model": f"openai/{CLOUD_MODEL}",
                "api_base": cloud_base,
                "api_key_env": CLOUD_KEY_ENV,
            },
            # The local tier as a pool of OpenAI-compatible servers (here: one, the stand-in).
            "local-pool": {"engine": "openai-compatible", "model": CLOUD_MODEL, "api_base": [cloud_base]},
            # A cloud model nobody gave a key for: choosing it must fall back to local.
            "keyless-cloud": {
                "engine": "litellm",
                "model": "openai/gpt-4.1",
                "api_key_env": "NO_SUCH_KEY_ENV",
            },
        },
        "routes": {"local": "gemma-3-270m", "cloud": CLOUD_MODEL},
        "aliases": {"my-fast-model": "local"},
        "server": {"max_body_bytes": 64 * 1024, **server},
        "ledger": {"path": str(path.parent / "ledger.sqlite")},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def start_gateway(tmp: Path, cloud_base: str, env: dict[str, str], ready: str, **server: object) -> Iterator[Gateway]:
    config = write_config(tmp / "router.yaml", cloud_base, **server)
    port = free_port()
    log = tmp / "gateway.log"
    with running(gateway_args(port, config, TEST_POLICY), f"http://127.0.0.1:{port}{ready}", log, env=env):
        yield Gateway(f"http://127.0.0.1:{port}", log)


@pytest.fixture(scope="session")
def gateway(stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway as users run it: `router serve` in its own process, embedded local model, open access."""
    env = {CLOUD_KEY_ENV: "sk-stand-in", "NO_SUCH_KEY_ENV": ""}
    with start_gateway(tmp_path_factory.mktemp("gateway"), stand_in_cloud, env, "/readyz") as gw:
        yield gw


@pytest.fixture(scope="session")
def strict_gateway(stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with API keys and `unknown_models: reject`."""
    env = {CLOUD_KEY_ENV: "sk-stand-in", "ROUTER_API_KEYS": f"team-a:{API_KEY}"}
    with start_gateway(
        tmp_path_factory.mktemp("strict"), stand_in_cloud, env, "/healthz", unknown_models="reject"
    ) as gw:
        yield gw


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis of the tests' own (never the machine's shared one: some tests stop it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_url_for(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the tests' own single Redis (`redis`) or three-node Redis Cluster (`cluster`)."""
    return request.getfixturevalue("redis_cluster" if kind == "cluster" else "redis_server").url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real three-node Redis Cluster of the tests' own: the shared stores must work on one."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def ledger_gateway(stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of the module's own, so that no other test's requests are in its ledger."""
    env = {CLOUD_KEY_ENV: "sk-stand-in"}
    with start_gateway(tmp_path_factory.mktemp("ledger"), stand_in_cloud, env, "/readyz") as gw:
        yield gw


@dataclass
class FaultyCloud:
    url: str

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def set(self, mode: str, times: int | None = None, **options: float) -> None:
        httpx.post(f"{self.url}/control", json={"mode": mode, "times": times, **options}).raise_for_status()

    def calls(self) -> list[float]:
        return httpx.get(f"{self.url}/calls").json()["at"]

    def requests(self) -> list[dict]:
        """What each call sent (messages, prompt, headers): what a cloud provider would have seen."""
        return httpx.get(f"{self.url}/calls").json()["requests"]

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


@pytest.fixture(scope="session")
def faulty_cloud_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def faulty_cloud_session(faulty_cloud_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyCloud]:
    log = tmp_path_factory.mktemp("faulty") / "faulty.log"
    url = f"http://127.0.0.1:{faulty_cloud_port}"
    with running(faulty_cloud_args(faulty_cloud_port), f"{url}/v1/models", log):
        yield FaultyCloud(url)


@pytest.fixture()
def faulty_cloud(faulty_cloud_session: FaultyCloud) -> Iterator[FaultyCloud]:
    faulty_cloud_session.reset()
    yield faulty_cloud_session
    faulty_cloud_session.reset()


def stand_in_config(cloud_v1: str, ledger: Path, **extra: object) -> dict:
    """A gateway config whose local tier (a one-server pool) and cloud (through litellm) are both the
    stand-in at `cloud_v1`: answers in milliseconds, so policies and routing are what a test sees."""
    return {
        "models": {
            "local-pool": {"engine": "openai-compatible", "model": "stand-in", "api_base": [cloud_v1]},
            "gpt-4o-mini": {"engine": "litellm", "model": "openai/gpt-4o-mini", "api_base": cloud_v1,
                            "api_key_env": CLOUD_KEY_ENV},
        },
        "routes": {"local": "local-pool", "cloud": "gpt-4o-mini"},
        "ledger": {"path": str(ledger)},
        **extra,
    }  # fmt: skip


def gemma_config(cloud_v1: str, ledger: Path, local: dict | None = None, **extra: object) -> dict:
    """A gateway config with the real test model in process as the local tier (`local`: its settings
    beyond the defaults here) and the stand-in at `cloud_v1` as the cloud, through litellm."""
    return {
        "models": {
            "gemma-3-270m": {"engine": "llama-cpp", "package": "gemma-3-270m", "n_ctx": 2048, "n_threads": 1,
                             "default_max_tokens": 24, **(local or {})},
            "gpt-4o-mini": {"engine": "litellm", "model": "openai/gpt-4o-mini", "api_base": cloud_v1,
                            "api_key_env": CLOUD_KEY_ENV},
        },
        "routes": {"local": "gemma-3-270m", "cloud": "gpt-4o-mini"},
        "ledger": {"path": str(ledger)},
        **extra,
    }  # fmt: skip


@contextmanager
def config_gateway(tmp: Path, config: dict, policy: str, redis_url: str = "") -> Iterator[Gateway]:
    """`router serve` with this config and policy text (written to `tmp`), the stand-in cloud's key set,
    and Redis when a URL is given; ready once `/readyz` says so."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "router.yaml").write_text(yaml.safe_dump(config))
    (tmp / "policy.yaml").write_text(policy)
    port = free_port()
    env = {CLOUD_KEY_ENV: "sk-stand-in", "ROUTER_REDIS_URL": redis_url}
    args = gateway_args(port, tmp / "router.yaml", tmp / "policy.yaml")
    with running(args, f"http://127.0.0.1:{port}/readyz", tmp / "gateway.log", env=env):
        yield Gateway(f"http://127.0.0.1:{port}", tmp / "gateway.log")


@pytest.fixture(scope="session")
def instant_gateway(faulty_cloud_session: FaultyCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`router serve` with the default policy, whose local tier (a one-server pool) and cloud (through
    litellm) are both the instant fault-injecting stand-in: valid requests are answered in milliseconds,
    not a model's time (the fuzz suites, the Anthropic client's tool calls)."""
    tmp = tmp_path_factory.mktemp("instant")
    config = stand_in_config(faulty_cloud_session.v1, tmp / "ledger.sqlite", server={"max_body_bytes": 256 * 1024})
    path = tmp / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "gateway.log"
    env = {CLOUD_KEY_ENV: "sk-stand-in"}
    with running(gateway_args(port, path, DEFAULT_POLICY_FILE), f"http://127.0.0.1:{port}/readyz", log, env=env):
        yield Gateway(f"http://127.0.0.1:{port}", log)
