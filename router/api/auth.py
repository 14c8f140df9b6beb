"""API keys: when any are configured, every /v1 request must carry one (`Authorization: Bearer KEY`, or
`x-api-key: KEY` as Anthropic's clients send it).

A presented key is hashed and compared in constant time with the configured hashes (`router/keys.py`).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from router.errors import AuthenticationFailed
from router.keys import hash_key


async def authenticate(request: Request) -> None:
    """Sets `request.state.tenant` (the key's team) and `request.state.key_name` from the key."""
    keys = request.app.state.components.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.headers.get("x-api-key", "")  # how Anthropic's clients send it
    if not token.strip():
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY` (or `x-api-key`).",
            code="missing_api_key",
        )
    digest = hash_key(token.strip())
    for known, identity in keys.items():
        if hmac.compare_digest(known, digest):
            request.state.tenant = identity.team
            request.state.key_name = identity.name
            return
    raise AuthenticationFailed("Incorrect API key provided.")
