"""One error shape for every response: `{"error": {"code", "message", "field"?}}` with a 4xx.

Handlers raise `ApiError` (or a subclass); `render_error` is the app's single error handler and
also turns Sanic's own exceptions (404 route, 405 method, oversized body) into the same shape.
Anything else is a bug: it is logged with its traceback and answered 500 without details.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sanic import Request, json
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from core.log import get_logger

log = get_logger("api.errors")

# Errors of a part we depend on being unreachable: a 503, never a 500.
DEPENDENCY_ERRORS = (
    OSError,  # refused / reset connections (PostgreSQL, LiveKit, storage)
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class ApiError(Exception):
    """An error the client can act on; rendered as the contract's JSON with `status`."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


class ValidationFailed(ApiError):
    status = 422
    code = "validation_error"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Gone(ApiError):
    status = 410
    code = "gone"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class Unavailable(ApiError):
    """A dependency (Temporal, PostgreSQL, storage, LiveKit) cannot be reached right now."""

    status = 503
    code = "unavailable"


def error_response(err: ApiError) -> HTTPResponse:
    return json(err.body(), status=err.status, headers=err.headers)


def render_error(request: Request, exc: Exception) -> HTTPResponse:
    """The app's error handler: contract JSON for every error, no internals in a 5xx."""
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, SanicException):
        status = int(getattr(exc, "status_code", 500) or 500)
        if status < 500:
            code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
                status, "bad_request"
            )
            headers = dict(getattr(exc, "headers", {}) or {})
            return json(
                {"error": {"code": code, "message": str(exc) or code.replace("_", " ")}},
                status=status,
                headers=headers,
            )
    if isinstance(exc, DEPENDENCY_ERRORS):
        # A dependency outage is not a bug; the client may retry. No details: they may hold DSNs.
        log.warning("dependency_unavailable", path=request.path, error=type(exc).__name__)
        return json(
            {
                "error": {
                    "code": "dependency_unavailable",
                    "message": "a backing service is unavailable; retry later",
                }
            },
            status=503,
            headers={"Retry-After": "5"},
        )
    log.exception("unhandled_error", path=request.path, method=request.method)
    return json({"error": {"code": "internal", "message": "internal error"}}, status=500)
