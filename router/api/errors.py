"""The one place that turns errors into OpenAI's error envelope: {"error": {message, type, param, code}}."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from router.errors import InvalidRequest, RouterError

log = logging.getLogger(__name__)


def envelope(message: str, error_type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def router_error_body(exc: RouterError) -> dict[str, Any]:
    return envelope(exc.message, exc.error_type, exc.code, exc.param)


def sse_error_event(exc: RouterError) -> bytes:
    """An error inside a stream that has already started: the openai client raises it as an APIError."""
    return f"data: {json.dumps(router_error_body(exc))}\n\n".encode()


def param_path(loc: tuple[Any, ...]) -> str:
    """`("messages", 0, "role")` → `messages[0].role`, the way OpenAI names parameters."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_to_invalid_request(exc: ValidationError | RequestValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if p != "body")
    param = param_path(loc) or None
    if (field := (first.get("ctx") or {}).get("field")) is not None:  # a check across fields names the one missing
        param = f"{param}.{field}" if param else field
    if first["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    elif first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        got = first.get("input")
        got_text = f" (got {json.dumps(got)[:80]})" if not isinstance(got, dict | list) else ""
        message = f"Invalid value for '{param}': {first['msg']}{got_text}."
    more = len(exc.errors()) - 1
    if more:
        message += f" ({more} more problem{'s' if more > 1 else ''} in this request.)"
    return InvalidRequest(message, param=param, code="invalid_value" if first["type"] != "missing" else "missing")


ANTHROPIC_PATHS = "/v1/messages"
"""Anthropic's Messages API answers errors in its own shape, so its SDK raises its own exceptions."""


def error_response(exc: RouterError, request_id: str | None = None, path: str = "") -> JSONResponse:
    headers = dict(exc.headers)
    if request_id:
        headers["x-request-id"] = request_id
    if path.startswith(ANTHROPIC_PATHS):
        from router.api.anthropic_format import error_body

        return JSONResponse(error_body(exc.status_code, exc.message), status_code=exc.status_code, headers=headers)
    return JSONResponse(router_error_body(exc), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    def request_id(request: Request) -> str | None:
        return getattr(request.state, "request_id", None)

    @app.exception_handler(RouterError)
    async def _router_error(request: Request, exc: RouterError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("request %s failed: %s %s", request_id(request), exc.status_code, exc.message)
        return error_response(exc, request_id(request), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_to_invalid_request(exc), request_id(request), request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = f"Unknown request URL: {request.method} {request.url.path}." if exc.status_code == 404 else exc.detail
        body = envelope(str(message), "invalid_request_error", codes.get(exc.status_code, "http_error"))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))
