"""The app factory: builds the object graph once, starts the backends in the lifespan, mounts the routes.

Config and policy are validated here, before the server binds a port, so a bad file stops start-up
with its file name and line. Models load in the background: `/healthz` answers at once, `/readyz` says
503 until the local model is loaded, and requests that arrive meanwhile wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from router import tracing
from router.api import LastResortMiddleware, RequestIdMiddleware, install_error_handlers, openai_api, ops, router_api
from router.api.anthropic_routes import anthropic_api
from router.api.embeddings import embeddings_api
from router.api.openapi import install_openapi
from router.api.responses_routes import responses_api
from router.backends import Backend, build_backend
from router.backends.litellm_backend import import_litellm
from router.backends.local_embedder import LocalEmbedder
from router.backends.model_files import model_gguf_path
from router.cache import MemoryCacheStore, RedisCacheStore, ResponseCache
from router.cache.stores import CacheStore
from router.classify.embedding_service import EmbeddingService
from router.classify.head import head_for_local, strong_head
from router.classify.scorer import EscalationScorer
from router.components import Components
from router.config import DEFAULT_POLICY_FILE, GatewayConfig, LlamaCppModel, Settings, load_gateway_config
from router.dashboard import dashboard
from router.deciding import Decider
from router.keys import key_table
from router.ledger import Ledger, LedgerStore, Pricer, RedisLedgerStore, SqliteLedgerStore
from router.limits import Limiter, LimitStore, MemoryLimitStore, RedisLimitStore, restore_team_spend
from router.metrics import Metrics
from router.pipeline import Pipeline
from router.policy import PolicyEngine, load_policy
from router.policy.reload import PolicyWatcher
from router.quality import JudgementStore, RedisJudgementStore, SqliteJudgementStore
from router.quality.monitor import QualityMonitor
from router.quality.report import QualityReporter
from router.quality.shadow import ShadowEvaluator
from router.quality.store import RedisLiveThresholds
from router.recorder import RequestRecorder, observers_for
from router.redis_client import RedisGuard, connect
from router.resilience import BreakerStore, Executor, MemoryBreakerStore, RedisBreakerStore, build_guards
from router.routing import LOCAL_EMBEDDER, Router
from router.sessions import MemorySessionStore, RedisSessionStore, Sessions
from router.tokens import TokenCounter, gguf_vocab_counter
from router.types import Usage

log = logging.getLogger(__name__)


def ledger_file(settings: Settings, config: GatewayConfig) -> Path:
    return config.ledger.path or settings.ledger_path or settings.model_dir.parent / "ledger.sqlite"


def build_ledger_store(settings: Settings, config: GatewayConfig, redis: RedisGuard | None) -> LedgerStore:
    """SQLite in the cache folder (or `ledger.path`); Redis, with that file as its stand-in, when configured."""
    local = SqliteLedgerStore(ledger_file(settings, config), config.ledger.retention_days)
    if redis is None:
        return local
    return RedisLedgerStore(redis, local, retention_days=config.ledger.retention_days)


def build_judgement_store(settings: Settings, config: GatewayConfig, redis: RedisGuard | None) -> JudgementStore:
    """Judgements beside the ledger: in its SQLite file, or in Redis (that file standing in) when configured."""
    local = SqliteJudgementStore(ledger_file(settings, config), config.ledger.retention_days)
    if redis is None:
        return local
    return RedisJudgementStore(redis, local, retention_days=config.ledger.retention_days)


def cloud_models(config: GatewayConfig) -> set[str]:
    return {name for name, spec in config.models.items() if spec.tier == "cloud"}


def build_quality(
    config: GatewayConfig,
    store: JudgementStore,
    ledger: Ledger,
    executor: Executor,
    metrics: Metrics,
    backends: Mapping[str, Backend],
) -> tuple[QualityReporter, ShadowEvaluator | None]:
    """The quality reporter, and the shadow evaluator when `shadow.share` or `shadow.explore` is set."""
    shadow = None
    if config.shadow.enabled:
        reference = config.shadow.reference or config.ledger.reference_model or next(iter(config.routes.cloud), None)
        if reference is None:
            log.warning("shadow evaluation is configured, but there is no cloud model to compare with: it stays off")
        else:

            def price(model: str, usage: Usage) -> float:
                return ledger.pricer.cost(model, usage) if ledger.pricer is not None else 0.0

            def local_busy() -> bool:
                return bool(backends[config.routes.local].stats().get("waiting", 0))

            def unavailable(model: str) -> str | None:
                return backends[model].unavailable_reason()

            if (why := unavailable(reference)) is not None:
                log.warning("shadow evaluation: the reference model %s cannot answer (%s); nothing is shadowed "
                            "until it can", reference, why)  # fmt: skip

            shadow = ShadowEvaluator(config.shadow, executor, store, metrics, config.routes.local, reference,
                                     cloud_models(config), price, local_busy, unavailable)  # fmt: skip
    status = (
        (lambda: {"jobs": dict(shadow.counts), "pending": shadow.pending, "reference": shadow.reference_model})
        if shadow
        else None
    )
    return QualityReporter(store, ledger, config.shadow, cloud_models(config), status), shadow


def build_limiter(config: GatewayConfig, redis: RedisGuard | None) -> Limiter:
    key_limits = {key.name: key.limits for key in config.auth.keys if key.limits is not None}
    store: LimitStore = RedisLimitStore(redis) if redis is not None else MemoryLimitStore()
    return Limiter(config.limits, key_limits, store)


def build_sessions(config: GatewayConfig, redis: RedisGuard | None) -> Sessions:
    """Sticky sessions, in Redis when configured (replicas share them), else in this process."""
    store = RedisSessionStore(redis) if redis is not None else MemorySessionStore()
    return Sessions(store, config.sessions.ttl_s)


def build_cache(config: GatewayConfig, redis: RedisGuard | None, embeddings: EmbeddingService) -> ResponseCache | None:
    """The response cache on Redis when configured (shared by replicas), else in this process."""
    if not config.cache.enabled:
        return None
    store: CacheStore = (
        RedisCacheStore(redis)
        if redis is not None
        else MemoryCacheStore(config.cache.max_entries, config.cache.max_bytes)
    )
    return ResponseCache(store, config.cache, can_embed=lambda: embeddings.error is None)


def token_counter(settings: Settings, config: GatewayConfig, local: Backend, dry_run: bool) -> TokenCounter:
    """The local model's exact counts: from the loaded model once it is loaded; for a dry run (the CLI), from
    its GGUF's vocabulary without loading the weights. The estimate when neither is at hand."""
    if not dry_run:
        return TokenCounter(getattr(local, "count_tokens", None))
    spec = config.models[config.routes.local]
    if not isinstance(spec, LlamaCppModel):
        return TokenCounter()
    try:
        return TokenCounter(gguf_vocab_counter(str(model_gguf_path(spec.model_path, spec.package, settings.model_dir))))
    except Exception:  # no GGUF at hand: estimate; the decision is still shown
        return TokenCounter()


def build_components(settings: Settings, *, dry_run: bool = False) -> Components:
    """Everything the gateway needs, built once and complete; raises `ConfigError` for a bad config or policy.
    `dry_run`: for deciding without answering (the CLI), so the local model's weights are never loaded."""
    config = load_gateway_config(settings.config)
    if (config.tracing.enabled or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")) and not tracing.enabled():
        tracing.configure(config.tracing.endpoint, config.tracing.service_name, config.tracing.sample_ratio)
    policy_path = settings.policy or DEFAULT_POLICY_FILE
    policy = load_policy(policy_path, config.models)
    backends = {name: build_backend(name, spec, settings.model_dir) for name, spec in config.models.items()}
    local = backends[config.routes.local]
    tokens = token_counter(settings, config, local, dry_run)
    metrics = Metrics()
    redis = None
    if settings.redis_url:
        redis = RedisGuard(connect(settings.redis_url), on_error=lambda what: metrics.redis_errors.labels(what).inc())
    breaker_store: BreakerStore = RedisBreakerStore(redis) if redis is not None else MemoryBreakerStore()
    ledger = Ledger(build_ledger_store(settings, config, redis), config.ledger)
    limiter = build_limiter(config, redis)
    # One embedder serves the classifier, the intents, the semantic cache and /v1/embeddings; it loads when
    # the first of them needs it (at start-up when the policy or the cache does).
    embeddings = EmbeddingService(config.embedder, settings.model_dir.parent / "embedders")
    cache = build_cache(config, redis, embeddings)
    embedder = LocalEmbedder(LOCAL_EMBEDDER, embeddings, tokens.count)
    guards = build_guards(config, breaker_store, metrics, extra=(LOCAL_EMBEDDER,))
    executor = Executor({**backends, LOCAL_EMBEDDER: embedder}, guards, metrics)
    judgements = build_judgement_store(settings, config, redis)
    quality, shadow = build_quality(config, judgements, ledger, executor, metrics, backends)
    router = Router(config, policy, unavailable=lambda name: backends[name].unavailable_reason())
    sessions = build_sessions(config, redis)
    scorer = EscalationScorer(embeddings, head_for_local(config), strong_head(config))
    decider = Decider(router, limiter, sessions, embeddings, scorer, config.classifier.input)
    recorder = RequestRecorder(ledger, observers_for(metrics, limiter, sessions, shadow))
    pipeline = Pipeline(decider, executor, tokens, config.server.request_timeout_s, recorder, cache)
    monitor = None
    if shadow is not None or config.auto_calibrate is not None:
        shared = RedisLiveThresholds(redis) if redis is not None else None
        monitor = QualityMonitor(quality, router, metrics, config.auto_calibrate, shared)
    watcher = policy_watcher(policy_path, pipeline, config, metrics)
    return Components(
        settings,
        config,
        backends,
        pipeline,
        policy_path,
        metrics=metrics,
        ledger=ledger,
        redis=redis,
        api_keys=key_table(config, settings.api_keys),
        policy_watcher=watcher,
        quality=quality,
        shadow=shadow,
        monitor=monitor,
    )


def policy_watcher(path: Path, pipeline: Pipeline, config: GatewayConfig, metrics: Metrics) -> PolicyWatcher:
    """Hot reload: a changed policy file is validated, made ready to decide (its intents embedded) off the
    request path, then swapped into the router in one assignment."""
    router = pipeline.router

    async def prepare(engine: PolicyEngine) -> None:
        await ready_to_decide(pipeline, engine, router.policy)

    return PolicyWatcher(
        path,
        router.policy,
        router.use_policy,
        config.models,
        on_result=lambda result: metrics.policy_reloads.labels(result).inc(),
        prepare=prepare,
    )


def needs_embedder(pipeline: Pipeline, engine: PolicyEngine) -> bool:
    """Whether deciding under `engine` (or the semantic cache) uses the embedder."""
    semantic = pipeline.cache is not None and pipeline.cache.semantic_available
    return engine.policy.uses_classifier or engine.needs_intents or semantic


async def ready_to_decide(pipeline: Pipeline, engine: PolicyEngine, previous: PolicyEngine | None = None) -> None:
    """Before a policy decides: its embedder loaded and its intents' examples embedded (reusing `previous`'s
    vectors for unchanged texts). Off the request path: at start-up, on a reload, before a CLI decides."""
    embeddings = pipeline.embeddings
    if embeddings is None or not needs_embedder(pipeline, engine):
        return
    await embeddings.start()
    if not engine.policy.intents:
        return
    if not embeddings.ready:
        log.error("policy intents cannot be matched: %s", embeddings.error)
        return
    fresh = await engine.attach_intents(embeddings.embed_many, previous)
    log.info("policy %s: %d intent(s), %d example text(s) embedded", engine.version, len(engine.policy.intents), fresh)


async def _start_pricing(components: Components) -> None:
    """Prices come from litellm's cost map (read off the event loop; litellm itself only if needed)."""
    pricer = await asyncio.to_thread(Pricer, components.config, import_litellm)
    components.ledger.use_pricer(pricer)


async def _freeze_heap_when_started(starting: list[asyncio.Task[object]]) -> None:
    """Once everything has loaded, move the start-up heap out of the garbage collector's sight.

    litellm, onnxruntime, llama.cpp and pydantic leave ~350k long-lived objects; a full collection walks
    them all (~230 ms on two cores here), and every so many requests one lands in the middle of a request
    as a p99 spike. `gc.freeze()` parks them in a permanent generation: later collections look only at
    what requests allocate.
    """
    await asyncio.gather(*starting, return_exceptions=True)
    gc.collect()
    gc.freeze()
    log.info("start-up complete; %d long-lived objects frozen out of garbage collection", gc.get_freeze_count())


async def _cancelled(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def deciding(components: Components) -> AsyncIterator[Pipeline]:
    """The pipeline ready to decide with no model loaded (the CLI's dry runs): its embedder and intents
    ready, shared state closed afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        if components.redis is not None:
            stack.push_async_callback(components.redis.close)
        pipeline = components.pipeline
        if pipeline.embeddings is not None:
            stack.push_async_callback(pipeline.embeddings.close)
        await ready_to_decide(pipeline, pipeline.router.policy)
        yield pipeline


@contextlib.asynccontextmanager
async def serving(components: Components) -> AsyncIterator[None]:
    """Start everything the gateway runs, and stop it in the reverse order (each start beside its stop)."""
    pipeline = components.pipeline
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(tracing.shutdown)
        if components.redis is not None:
            stack.push_async_callback(components.redis.close)
        if pipeline.embeddings is not None:
            stack.push_async_callback(pipeline.embeddings.close)
        if pipeline.cache is not None:
            await pipeline.cache.store.start()
            stack.push_async_callback(pipeline.cache.store.close)
        if components.quality is not None:
            stack.push_async_callback(components.quality.store.close)
        components.ledger.start()
        stack.push_async_callback(components.ledger.close)
        backends = components.backends.values()
        stack.push_async_callback(lambda: asyncio.gather(*(b.close() for b in backends), return_exceptions=True))
        starting = [asyncio.create_task(b.start(), name=f"start-{b.name}") for b in backends]
        starting.append(asyncio.create_task(_start_pricing(components), name="start-pricing"))
        starting.append(asyncio.create_task(ready_to_decide(pipeline, pipeline.router.policy), name="start-embedder"))
        starting.append(asyncio.create_task(_freeze_heap_when_started(list(starting)), name="freeze-heap"))
        stack.push_async_callback(_cancelled, starting)
        if (limiter := pipeline.limiter) is not None:
            teams = await restore_team_spend(limiter, components.ledger.store, time.time())
            log.info("budgets: spend of %d team(s) this month restored from the ledger", teams)
        for service in (components.shadow, components.monitor, components.policy_watcher):
            if service is not None:
                service.start()
                stack.push_async_callback(service.close)
        yield


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    components: Components = app.state.components
    log.info(
        "policy %s (version %s), local model %s, cloud model %s",
        components.policy_path,
        components.pipeline.router.policy.version,
        components.config.routes.local,
        ", ".join(components.config.routes.cloud) or "none",
    )
    for backend in components.backends.values():
        if (reason := backend.unavailable_reason()) is not None:
            log.warning("model %s cannot answer as configured: %s", backend.name, reason)
    async with serving(components):
        yield


def create_app(settings: Settings | None = None, components: Components | None = None) -> FastAPI:
    components = components or build_components(settings or Settings())
    app = FastAPI(
        title="hybrid-router",
        summary="OpenAI-compatible gateway: local model first, cloud when the policy says so.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.components = components
    app.add_middleware(LastResortMiddleware)  # inside RequestId, so that its 500 carries the request id
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(openai_api)
    app.include_router(anthropic_api)
    app.include_router(responses_api)
    app.include_router(embeddings_api)
    app.include_router(router_api)
    app.include_router(ops)
    app.include_router(dashboard)
    return app
