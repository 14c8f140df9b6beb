"""API keys: when any are configured, every /v1 request must carry one (`Authorization: Bearer KEY`)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from router.errors import AuthenticationFailed


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(request: Request) -> None:
    """Sets `request.state.tenant` from the key; keys are kept hashed and compared in constant time."""
    keys = request.app.state.components.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY`.",
            code="missing_api_key",
        )
    digest = hash_key(token.strip())
    for known, tenant in keys.items():
        if hmac.compare_digest(known, digest):
            request.state.tenant = tenant
            return
    raise AuthenticationFailed("Incorrect API key provided.")
