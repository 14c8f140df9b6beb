"""API keys: where they come from and who each one is. Only their SHA-256 is ever kept.

Keys come from `auth.keys` in the gateway config (as SHA-256, or the name of an environment variable)
and from `ROUTER_API_KEYS` (`team:key` entries). A key names its team: the tenant its requests, spend,
cache entries and limits count for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from router.config import GatewayConfig, parse_api_keys, read_secret_env
from router.errors import ConfigError


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    name: str
    team: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_table(config: GatewayConfig, env_keys: str | None) -> dict[str, KeyIdentity]:
    """sha256(key) → who it is; a config key whose environment variable is unset stops start-up."""
    table = {hash_key(key): KeyIdentity(team, team) for key, team in parse_api_keys(env_keys).items()}
    for key in config.auth.keys:
        if key.sha256 is not None:
            digest = key.sha256
        else:
            secret = read_secret_env(key.env)
            if not secret:
                raise ConfigError(f"auth.keys `{key.name}`: the environment variable {key.env} is not set")
            digest = hash_key(secret)
        table[digest] = KeyIdentity(key.name, key.team or key.name)
    return table
