"""Read and validate a JSON request body: size limit, JSON syntax, shape limits, then the API's schema.

Everything here is client-controlled, so every failure must become a 4xx in the API's envelope:
`json.loads` recurses (a body nested a few thousand levels deep raises RecursionError), and a JSON
`\\ud800` escape decodes to a lone surrogate that no UTF-8 encoder downstream accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from router.api.errors import param_path, validation_to_invalid_request
from router.errors import InvalidRequest, PayloadTooLarge

ModelT = TypeVar("ModelT", bound=BaseModel)

# Deep enough for any real request (a tool's JSON schema nests objects in objects), shallow enough
# that every later recursive walk (pydantic, json.dumps for cache keys) stays far from Python's limit.
MAX_DEPTH = 64


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


def check_shape(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` and strings that are not valid Unicode, naming the field.

    Iterative, so that the check itself cannot overflow the stack it protects.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > max_depth:
            raise InvalidRequest(
                f"The request body nests deeper than {max_depth} levels (at '{param_path(path[:8])}…').",
                param=param_path(path[:1]) or None,
                code="json_too_deep",
            )
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        param = param_path(path) or None
        raise InvalidRequest(
            f"Invalid value for '{param or 'body'}': the string holds a lone UTF-16 surrogate "
            f"(\\u{ord(text[exc.start]):04x} at character {exc.start}), which is not valid Unicode.",
            param=param,
            code="invalid_unicode",
        ) from None


def parse_json(raw: bytes) -> Any:
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
    except RecursionError:
        raise InvalidRequest(f"The request body nests deeper than {MAX_DEPTH} levels.", code="json_too_deep") from None
    if _may_break_limits(raw):
        check_shape(data)
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _may_break_limits(raw: bytes) -> bool:
    """Whether the parsed body needs `check_shape`'s walk: a lone surrogate can only come from a `\\uD8xx`
    escape (the bytes themselves are strict UTF-8), and nesting past the limit needs that many brackets.
    Most bodies have neither, and skip the walk."""
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw) is not None


async def parse_request(request: Request, model: type[ModelT], max_bytes: int) -> ModelT:
    data = parse_json(await read_body(request, max_bytes))
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_invalid_request(exc) from exc
