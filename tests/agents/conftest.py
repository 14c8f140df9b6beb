"""The coding agents' world: a stand-in cloud that speaks Anthropic Messages, OpenAI Responses and Chat
Completions (`tests/agent_cloud.py`), a gateway in front of it, and the real agent CLIs from npm."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLOUD_KEY_ENV, Gateway, config_gateway
from tests.servers import free_port, running

AGENTS = Path(__file__).resolve().parent
BIN = AGENTS / "node_modules" / ".bin"
CLI_TIMEOUT_S = 240


@dataclass
class AgentCloud:
    url: str

    def requests(self, path: str | None = None) -> list[dict]:
        """What reached the stand-in (path, headers, body, and the answer it gave), oldest first."""
        seen = httpx.get(f"{self.url}/calls").json()["requests"]
        return [r for r in seen if path is None or r["path"] == path]

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


@pytest.fixture(scope="session")
def agent_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentCloud]:
    port = free_port()
    log = tmp_path_factory.mktemp("agent-cloud") / "cloud.log"
    args = [sys.executable, "-m", "tests.agent_cloud", "--port", str(port)]
    with running(args, f"http://127.0.0.1:{port}/v1/models", log):
        yield AgentCloud(f"http://127.0.0.1:{port}")


def agent_config(cloud: str, ledger: Path) -> dict:
    """Local tier: the stand-in's chat completions; cloud: an Anthropic model and an OpenAI model, both
    the stand-in, reached through litellm's providers (so the gateway's own cloud backend is what runs)."""
    return {
        "models": {
            # The stand-in chat calls tools (it asks to read a file), as a tool-calling local server would.
            "local-pool": {"engine": "openai-compatible", "model": "stand-in", "api_base": [f"{cloud}/v1"],
                           "capabilities": ["tools", "json"]},
            "claude": {"engine": "litellm", "model": "anthropic/claude-sonnet-4-5", "api_base": cloud,
                       "api_key_env": CLOUD_KEY_ENV},
            # An OpenAI model at another api_base is taken for a chat-only compatible server unless told.
            "gpt": {"engine": "litellm", "model": "openai/gpt-5", "api_base": f"{cloud}/v1",
                    "api_key_env": CLOUD_KEY_ENV, "capabilities": ["tools", "json", "vision", "responses"]},
        },
        "routes": {"local": "local-pool", "cloud": ["claude", "gpt"]},
        "ledger": {"path": str(ledger)},
    }  # fmt: skip


POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _gateway(cloud: AgentCloud, tmp: Path, policy: str) -> Iterator[Gateway]:
    """`router serve` with a shipped policy in front of the stand-in clouds."""
    with config_gateway(tmp, agent_config(cloud.url, tmp / "ledger.sqlite"), (POLICIES / policy).read_text()) as gw:
        yield gw


@pytest.fixture(scope="session")
def agent_gateway(agent_cloud: AgentCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway on the default policy: what a user who changes nothing gets."""
    yield from _gateway(agent_cloud, tmp_path_factory.mktemp("agent-gateway"), "default.yaml")


@pytest.fixture(scope="session")
def coding_agent_gateway(agent_cloud: AgentCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway on the shipped coding-agent policy."""
    yield from _gateway(agent_cloud, tmp_path_factory.mktemp("coding-agent-gateway"), "coding-agent.yaml")


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A project directory for the agent, with a file whose content only a tool call can reveal."""
    (tmp_path / "notes.txt").write_text("The secret word is pelican.\n")
    return tmp_path


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an agent CLI non-interactively, with a home of its own (its settings never touch the user's)."""
    home = cwd.parent / f"{cwd.name}-home"
    home.mkdir(exist_ok=True)
    full_env = {"PATH": os.environ["PATH"], "HOME": str(home), "NO_COLOR": "1", **env}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
