"""The judgements a gateway stored (its ledger's SQLite file, or Redis), for the CLI's offline commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from router.cli._common import _settings
from router.config import load_gateway_config
from router.quality import Judgement


def stored_judgements(config: Path | None, window: str, embeddings: bool = False) -> list[Judgement]:
    """The judgements of the last `window` in the store the gateway with this config writes to."""
    from router.app import build_judgement_store
    from router.ledger.stats import parse_window
    from router.redis_client import RedisGuard, connect

    settings = _settings(config, None)
    gateway = load_gateway_config(settings.config)
    seconds = parse_window(window)

    async def read() -> list[Judgement]:
        redis = RedisGuard(connect(settings.redis_url)) if settings.redis_url else None
        store = build_judgement_store(settings, gateway, redis)
        try:
            now = time.time()
            return await store.query(now - seconds, now, embeddings)
        finally:
            await store.close()
            if redis is not None:
                await redis.close()

    return asyncio.run(read())
