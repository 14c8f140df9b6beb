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
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from fastapi import FastAPI

from router import tracing
from router.api import LastResortMiddleware, RequestIdMiddleware, install_error_handlers, openai_api, ops, router_api
from router.api.anthropic_routes import anthropic_api
from router.api.embeddings import embeddings_api
from router.api.openapi import install_openapi
from router.api.responses_routes import responses_api
from router.backends import Backend, build_backend
from router.backends.litellm_backend import import_litellm
from router.cache import MemoryCacheStore, RedisCacheStore, ResponseCache
from router.cache.stores import CacheStore
from router.classify.embedding_service import EmbeddingService
from router.classify.head import SHIPPED_HEAD, packaged_head_for
from router.classify.scorer import EscalationScorer
from router.components import Components
from router.config import DEFAULT_POLICY_FILE, GatewayConfig, LlamaCppModel, Settings, load_gateway_config
from router.dashboard import dashboard
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
from router.recorder import RequestRecorder
from router.redis_client import RedisGuard, connect
from router.resilience import BreakerStore, Executor, MemoryBreakerStore, RedisBreakerStore, build_guards
from router.routing import Router
from router.sessions import MemorySessionStore, RedisSessionStore, Sessions
from router.tokens import TokenCounter
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


def build_cache(config: GatewayConfig, redis: RedisGuard | None) -> ResponseCache | None:
    """The response cache on Redis when configured (shared by replicas), else in this process."""
    if not config.cache.enabled:
        return None
    store: CacheStore = (
        RedisCacheStore(redis)
        if redis is not None
        else MemoryCacheStore(config.cache.max_entries, config.cache.max_bytes)
    )
    return ResponseCache(store, config.cache)


def build_limiter(config: GatewayConfig, redis: RedisGuard | None) -> Limiter:
    key_limits = {key.name: key.limits for key in config.auth.keys if key.limits is not None}
    store: LimitStore = RedisLimitStore(redis) if redis is not None else MemoryLimitStore()
    return Limiter(config.limits, key_limits, store)


def build_sessions(config: GatewayConfig, redis: RedisGuard | None) -> Sessions:
    """Sticky sessions, in Redis when configured (replicas share them), else in this process."""
    store = RedisSessionStore(redis) if redis is not None else MemorySessionStore()
    return Sessions(store, config.sessions.ttl_s)


def head_for_local(config: GatewayConfig) -> Path:
    """The escalation head for the local model that answers: configured for it, else the one shipped for
    its packaged GGUF (fitted to that model's own mistakes), else the general head."""
    local = config.models[config.routes.local]
    package = local.package if isinstance(local, LlamaCppModel) and local.model_path is None else None
    return config.classifier.head_for(config.routes.local) or packaged_head_for(package) or SHIPPED_HEAD


def policy_applier(pipeline: Pipeline, head: Path = SHIPPED_HEAD) -> Callable[[PolicyEngine], None]:
    """Swap a reloaded policy in; a policy that newly routes `auto` gets the classifier on the shared embedder."""

    def apply(engine: PolicyEngine) -> None:
        if engine.policy.uses_classifier and pipeline.scorer is None:
            if pipeline.embeddings is not None:
                pipeline.scorer = EscalationScorer(pipeline.embeddings, head)
            else:
                log.warning("the new policy routes `auto`, but no embedder is loaded: restart the gateway to load it")
        pipeline.router.use_policy(engine)

    return apply


async def embed_intents(pipeline: Pipeline, engine: PolicyEngine, previous: PolicyEngine | None) -> None:
    """Embed a policy's intent examples before it goes live (reusing `previous`'s unchanged ones). A policy
    that newly names intents gets the embedder started here, off the request path."""
    if not engine.policy.intents:
        return
    if pipeline.embeddings is None:
        pipeline.embeddings = EmbeddingService(pipeline.embedder_config, pipeline.embedder_dir)
        await pipeline.embeddings.start()
    if not pipeline.embeddings.ready:
        log.error("policy intents cannot be matched: %s", pipeline.embeddings.error)
        return
    fresh = await pipeline.embeddings.run(engine.attach_intents, pipeline.embeddings.embed_now, previous)
    log.info("policy %s: %d intent(s), %d example text(s) embedded", engine.version, len(engine.policy.intents), fresh)


def build_components(settings: Settings) -> Components:
    """Everything the gateway needs, built once; raises `ConfigError` for a bad config or policy file."""
    config = load_gateway_config(settings.config)
    if (config.tracing.enabled or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")) and not tracing.enabled():
        tracing.configure(config.tracing.endpoint, config.tracing.service_name, config.tracing.sample_ratio)
    policy_path = settings.policy or DEFAULT_POLICY_FILE
    policy = load_policy(policy_path, config.models)
    backends = {name: build_backend(name, spec, settings.model_dir) for name, spec in config.models.items()}
    local = backends[config.routes.local]
    metrics = Metrics()
    redis = None
    breaker_store: BreakerStore = MemoryBreakerStore()
    if settings.redis_url:
        redis = RedisGuard(connect(settings.redis_url), on_error=lambda what: metrics.redis_errors.labels(what).inc())
        breaker_store = RedisBreakerStore(redis)
    ledger = Ledger(build_ledger_store(settings, config, redis), config.ledger)
    limiter = build_limiter(config, redis)
    cache = build_cache(config, redis)
    # One embedder serves the classifier and the semantic cache; it loads only if one of them needs it.
    needs_embeddings = (
        policy.policy.uses_classifier or policy.needs_intents or (cache is not None and config.cache.semantic)
    )
    embedder_dir = settings.model_dir.parent / "embedders"
    embeddings = EmbeddingService(config.embedder, embedder_dir) if needs_embeddings else None
    if cache is not None and embeddings is None:
        cache.semantic_available = False
    executor = Executor(backends, build_guards(config, breaker_store, metrics), metrics)
    judgements = build_judgement_store(settings, config, redis)
    quality, shadow = build_quality(config, judgements, ledger, executor, metrics, backends)
    pipeline = Pipeline(
        router=Router(config, policy),
        executor=executor,
        tokens=TokenCounter(getattr(local, "count_tokens", None)),
        request_timeout_s=config.server.request_timeout_s,
        recorder=RequestRecorder(ledger, metrics, limiter, build_sessions(config, redis), shadow),
        scorer=EscalationScorer(embeddings, head_for_local(config))
        if embeddings is not None and policy.policy.uses_classifier
        else None,
        cache=cache,
        embeddings=embeddings,
        limiter=limiter,
    )
    pipeline.router.unavailable = lambda name: backends[name].unavailable_reason()
    if pipeline.sessions is not None:
        pipeline.sessions.wanted = lambda: pipeline.router.policy.uses_sessions
    pipeline.embedder_config, pipeline.embedder_dir = config.embedder, embedder_dir
    pipeline.classifier_input = config.classifier.input
    monitor = None
    if shadow is not None or config.auto_calibrate is not None:
        shared = RedisLiveThresholds(redis) if redis is not None else None
        monitor = QualityMonitor(quality, pipeline.router, metrics, config.auto_calibrate, shared)
    watcher = PolicyWatcher(
        policy_path,
        policy,
        policy_applier(pipeline, head_for_local(config)),
        config.models,
        on_result=lambda result: metrics.policy_reloads.labels(result).inc(),
        prepare=lambda engine: embed_intents(pipeline, engine, pipeline.router.policy),
    )
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


async def _start_embeddings(pipeline: Pipeline) -> None:
    assert pipeline.embeddings is not None
    await pipeline.embeddings.start()
    if pipeline.cache is not None and not pipeline.embeddings.ready:
        pipeline.cache.semantic_available = False  # exact matches still work
    await embed_intents(pipeline, pipeline.router.policy, None)


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
    starting = [
        asyncio.create_task(backend.start(), name=f"start-{name}") for name, backend in components.backends.items()
    ]
    starting.append(asyncio.create_task(_start_pricing(components), name="start-pricing"))
    pipeline = components.pipeline
    if pipeline.embeddings is not None:
        starting.append(asyncio.create_task(_start_embeddings(pipeline), name="start-embedder"))
    if pipeline.cache is not None:
        await pipeline.cache.store.start()
    components.ledger.start()
    if (limiter := components.pipeline.limiter) is not None:
        teams = await restore_team_spend(limiter, components.ledger.store, time.time())
        log.info("budgets: spend of %d team(s) this month restored from the ledger", teams)
    if components.policy_watcher is not None:
        components.policy_watcher.start()
    if components.shadow is not None:
        components.shadow.start()
    if components.monitor is not None:
        components.monitor.start()
    freezer = asyncio.create_task(_freeze_heap_when_started(list(starting)), name="freeze-heap")
    try:
        yield
    finally:
        if components.policy_watcher is not None:
            await components.policy_watcher.close()
        if components.monitor is not None:
            await components.monitor.close()
        if components.shadow is not None:
            await components.shadow.close()
        for task in [*starting, freezer]:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in components.backends.values()), return_exceptions=True)
        await components.ledger.close()
        if components.quality is not None:
            await components.quality.store.close()
        if pipeline.cache is not None:
            await pipeline.cache.store.close()
        if pipeline.embeddings is not None:
            await pipeline.embeddings.close()
        if (own := getattr(app.state, "embeddings", None)) is not None:  # started by /v1/embeddings
            await own.close()
        if components.redis is not None:
            await components.redis.close()
        tracing.shutdown()


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
