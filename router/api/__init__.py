"""The HTTP layer: thin routes over the pipeline, one error mapping, one request-id middleware."""

from router.api.errors import install_error_handlers
from router.api.middleware import LastResortMiddleware, RequestIdMiddleware
from router.api.openai_routes import api as openai_api
from router.api.ops import ops, router_api

__all__ = ["LastResortMiddleware", "RequestIdMiddleware", "install_error_handlers", "openai_api", "ops", "router_api"]
