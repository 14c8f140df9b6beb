"""Plain data that travels between the stages of the request path.

`RequestContext` goes in, `Decision` says where it goes and why, `Completion` / `StreamDelta` come back.
All frozen: a stage returns new data, it never mutates what it was given.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from router.cascade_rule import CascadeSettings, Confidence

Route = Literal["local", "cloud"]
ServedRoute = Literal["local", "cloud", "cache"]
RequestKind = Literal["chat", "text", "embeddings"]


CONVERSATION_CHARS = 1200
"""How much of a conversation `scope: conversation` and a conversation classifier input read."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One client request, normalised: what the router, the backends and the ledger need to know."""

    request_id: str
    kind: RequestKind
    requested_model: str
    messages: tuple[Mapping[str, Any], ...]
    """Chat messages; a text completion's prompt is carried as one user message for the policy."""
    prompt: str | None = None
    """The raw prompt of a text completion (None for chat)."""
    inputs: tuple[str, ...] = ()
    """The texts to embed (kind `embeddings`)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Generation parameters the gateway understands (max_tokens, temperature, top_p, stop, seed, ...)."""
    passthrough: Mapping[str, Any] = field(default_factory=dict)
    """Fields the gateway does not use; sent to the cloud untouched."""
    stream: bool = False
    include_usage: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers, lower-cased names."""
    tenant: str | None = None
    timeout_s: float | None = None
    """The client's own deadline for this request (`x-router-timeout`), if it set one."""
    prompt_tokens: int = 0
    """Prompt size in tokens, counted once at the edge by the gateway's tokenizer for rules and limits."""
    received_at: float = field(default_factory=time.time)
    """Wall-clock arrival time (epoch seconds): what `time:` windows and budget periods read."""
    key_name: str | None = None
    """The API key's name, when keys are configured (its team is `tenant`)."""
    upstream_headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers a policy rule adds to calls to remote models (set by the executor per call)."""
    native: NativeRequest | None = None
    """The request as its client sent it, for a model that speaks the client's own API (`/v1/messages`
    to an Anthropic model, `/v1/responses` to an OpenAI one): forwarded whole instead of translated."""
    omitted: tuple[str, ...] = ()
    """What the translation into a chat request could not carry (thinking, server tools...): honoured
    when the request is forwarded natively, named in `x-router-omitted` when it is not."""
    answer_start: str = ""
    """Text an in-process model's answer begins with, rendered after the chat prompt (its tokens follow the
    prompt's, which a later request of the same prompt finds cached): the cascade's letter aside."""

    def prefill(self) -> str | None:
        """The start of the answer the client wrote for the model to continue: an Anthropic Messages request
        whose last message is the assistant's own text (Anthropic's prefill; the answer then holds only what
        follows it). An OpenAI chat request's last assistant message is a finished turn, not a prefill."""
        if self.native is None or self.native.api != "messages" or not self.messages:
            return None
        last = self.messages[-1]
        if last.get("role") != "assistant" or last.get("tool_calls"):
            return None
        return content_text(last.get("content")).rstrip()

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return content_text(message.get("content"))
        return ""

    def all_text(self) -> str:
        return "\n".join(content_text(m.get("content")) for m in self.messages)

    def recent_user_texts(self, count: int) -> list[str]:
        """The last `count` user messages' texts, newest first."""
        texts = [content_text(m.get("content")) for m in reversed(self.messages) if m.get("role") == "user"]
        return texts[:count]

    def conversation_text(self, max_chars: int = CONVERSATION_CHARS) -> str:
        """The recent user and assistant turns, newest first, cut to `max_chars`.

        Newest first because embedders read a bounded prefix (the default one 256 word pieces, about
        this many characters of English): the message being answered must be read whole, the turns
        before it as far as they fit. System prompts and tool results are left out: they say how to
        answer, not what is asked.
        """
        parts: list[str] = []
        left = max_chars
        for message in reversed(self.messages):
            if message.get("role") not in ("user", "assistant") or left <= 0:
                continue
            text = content_text(message.get("content")).strip()
            if not parts and message.get("role") != "user":
                continue  # a trailing assistant prefill is not what is being asked
            if text:
                parts.append(text[:left])
                left -= len(parts[-1]) + 1
        return "\n".join(parts)


NativeAPI = Literal["messages", "responses"]


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """A request in its client's own wire format, kept whole for a same-family pass-through."""

    api: NativeAPI
    body: Mapping[str, Any]
    """The JSON body the client sent (its `model` is replaced by the upstream's when forwarded)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The client's provider headers to forward (`anthropic-beta`, `anthropic-version`, `openai-beta`)."""
    query: str = ""
    """The client's query string (`beta=true` from Anthropic's beta client), forwarded as sent."""
    requires: tuple[str, ...] = ()
    """What the translation could not carry and the answer cannot go without (a document block, a server
    tool's result): the request needs a model of this API."""


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """Which of the policy's intents a text is nearest to, and how near: what `intent:` conditions read."""

    intent: str | None
    """The intent that matched (its nearest example cleared its threshold and the margin), else None."""
    nearest: str | None
    """The intent with the most similar example, matched or not (None when the policy has no examples)."""
    example: str = ""
    """That nearest example's text."""
    similarity: float = 0.0
    """Cosine similarity of the text to that example."""
    threshold: float = 0.0
    """The similarity the nearest intent needs."""
    runner_up: str | None = None
    runner_up_similarity: float = 0.0
    why_not: str | None = None
    turns_back: int = 0
    """`scope: conversation`: how many user messages back the matching one is (0: the newest)."""
    """When nothing matched: below the threshold, too close to the runner-up, or nearer a counter-example."""

    @property
    def margin(self) -> float:
        return self.similarity - self.runner_up_similarity

    def describe(self) -> str:
        shown = self.example if len(self.example) <= 60 else self.example[:57] + "..."
        said = f"nearest example of `{self.nearest}` is {shown!r} at {self.similarity:.3f} (needs {self.threshold:g})"
        if self.runner_up is not None:
            said += f", margin {self.margin:.3f} over `{self.runner_up}`"
        if self.turns_back:
            said += f", in the user message {self.turns_back} turn(s) back"
        return said


@dataclass(frozen=True, slots=True)
class Findings:
    """What the stages found out about a request before deciding: returned by the facts stage, read by the
    policy and the router, never written back into the request."""

    scores: Mapping[str, float] = field(default_factory=dict)
    """Classifier scores (`escalation`: 0..1), when the policy routes anything `auto`."""
    embedding: Any = field(default=None, compare=False, repr=False)
    """The last user message's unit-length embedding (numpy float32), computed once when the classifier,
    the intents or the semantic cache need it, and shared by them."""
    intents: Mapping[str, IntentMatch] = field(default_factory=dict)
    """The policy's intents matched against the request, by scope (`last_user`, `conversation`)."""
    budget: BudgetStatus | None = None
    """The tenant's spending against its budgets, when any apply (read once, at admission)."""
    session_escalated: bool = False
    """An earlier turn of this conversation was answered by the cloud (policies with `session: sticky`)."""


NOTHING_FOUND = Findings()


TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
"""Content parts that carry text: OpenAI's and Anthropic's `text`, the Responses API's input and output text."""


def content_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of content parts (text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES
        )
    return str(content)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A tenant's spending against the tightest of its budgets (day or month), at admission."""

    state: Literal["ok", "near", "over"]
    spent_usd: float = 0.0
    limit_usd: float | None = None
    period: str | None = None
    """`day` or `month`: the budget that is the closest to running out."""
    subject: str | None = None
    """Whose budget: `team:<name>` or `key:<name>`."""

    def describe(self) -> str:
        if self.limit_usd is None:
            return "no budget applies"
        return f"{self.subject} spent ${self.spent_usd:.4f} of ${self.limit_usd:g} this {self.period}"


@dataclass(frozen=True, slots=True)
class Denial:
    """A policy rule's refusal: no model is called."""

    message: str
    status: int = 403
    code: str = "denied_by_policy"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How the response cache treats one request: the gateway's defaults with the matching rule's overrides."""

    enabled: bool = True
    ttl_s: int = 3600
    semantic: bool = True
    semantic_threshold: float = 0.88
    sampled: bool = False
    """Cache answers of sampled requests (temperature > 0) too; off by default, as they are meant to vary."""


NO_CACHE = CacheSettings(enabled=False)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a request goes and why; travels to the end so headers, logs and ledger tell one story."""

    route: Route
    model: str
    """Name of the configured model that serves it."""
    reason: str
    """Rule name, `requested-model`, `default`, and later `classifier` or `cascade`."""
    rule: str | None = None
    fallbacks: tuple[str, ...] = ()
    """Configured models to try, in order, if `model` cannot answer before its first byte."""
    allow_cloud: bool = True
    """False when a rule pins the request to local: nothing may then reach a cloud model."""
    max_tokens_cap: int | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    cache: CacheSettings = NO_CACHE
    cascade: CascadeSettings | None = None
    """Set when the local model answers first and low confidence sends the request on to the cloud."""
    deny: Denial | None = None
    """Set when a rule refuses the request: the pipeline answers with this error and calls no model."""
    redact: tuple[str, ...] = ()
    """PII kinds replaced by placeholders before a cloud model sees the request (restored in the answer)."""
    upstream_headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers for calls to remote models (a rule's `headers:`)."""
    needs: tuple[str, ...] = ()
    """Capabilities the request needs (tools, json, vision, logprobs); every model in the chain has them."""
    intent: IntentMatch | None = None
    """The intent the matching rule routed on, when its conditions name one."""
    shadow: float | None = None
    """The matching rule's shadow share (0: never shadowed); None: the gateway's `shadow.share`."""
    remember_session: bool = False
    """The policy has sticky sessions: a cloud answer marks the conversation for its later turns."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    """Every input token, those read from or written to a provider's prompt cache included."""
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (billed at its cache-read rate)."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache (billed at its cache-write rate)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer from a backend."""

    content: str | None
    finish_reason: str | None
    usage: Usage
    model: str
    """The model name the upstream reported (what the client sees in `model`)."""
    message_extra: Mapping[str, Any] = field(default_factory=dict)
    """Other fields of the assistant message (tool_calls, refusal...), passed back as they came."""
    confidence: Confidence | None = None
    """The local model's confidence, when it was asked to measure it."""
    logprobs: Any = None
    """The choice's token log-probabilities in the API's own shape, when the request asked for them."""
    native: Mapping[str, Any] | None = None
    """The provider's own answer, when the request was forwarded natively: returned to the client as is."""


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """One piece of a streamed answer."""

    content: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    delta_extra: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    confidence: Confidence | None = None
    logprobs: Any = None
    native: bytes | None = None
    """One server-sent event of the provider's own stream, when forwarded natively: sent on as is."""


@dataclass(frozen=True, slots=True)
class Served:
    """What the pipeline tells the API about how a request was answered (becomes x-router-* headers)."""

    decision: Decision
    model: str
    route: ServedRoute
    fallback: str | None = None
    """e.g. `cloud->local`, when the answer came from a fallback model."""
    fallback_reason: str | None = None
    cache: str = "bypass"
    """What the cache did: `hit-exact`, `hit-semantic`, `miss` or `bypass` (x-router-cache)."""
    similarity: float | None = None
    """On a semantic hit, the cosine similarity of the question it matched."""
    cascade: str | None = None
    """`escalated` or `kept` when a cascade decided; with the local answer's `confidence`."""
    confidence: float | None = None
    native: bool = False
    """The request went whole to a model of its client's API, and its answer comes back as that model sent it."""
    cost_usd: float | None = None
    """What the answer cost, once priced (non-streamed answers: it goes into x-router-cost-usd)."""
    saved_usd: float | None = None
