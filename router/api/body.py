"""Read and validate a JSON request body: size limit, JSON syntax, then the OpenAI schema."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from router.api.errors import validation_to_invalid_request
from router.errors import InvalidRequest, PayloadTooLarge

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_body(request: Request, max_bytes: int) -> bytes:
    too_large = PayloadTooLarge(f"The request body is larger than this gateway accepts ({max_bytes} bytes).")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # chunked uploads declare no length: count as we read
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_request(request: Request, model: type[ModelT], max_bytes: int) -> ModelT:
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequest(
            f"We could not parse the JSON body of your request{detail}. Send valid JSON with "
            "Content-Type: application/json.",
            code="invalid_json",
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_invalid_request(exc) from exc
