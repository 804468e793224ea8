"""OpenAPI declarations (sanic-ext) built from the pydantic models in `api.schemas`, so the
document at `/docs` describes exactly what the handlers validate."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel
from sanic_ext import openapi
from sanic_ext.extensions.openapi.definitions import Component, RequestBody, Response
from sanic_ext.extensions.openapi.types import Float, Integer, String

from api.schemas import ErrorBody
from core.models import CALL_ID_RE

F = TypeVar("F", bound=Callable[..., Any])

_ERROR_TEXT = {
    400: "Malformed request",
    401: "No or invalid bearer token",
    403: "The token's role may not do this",
    404: "No such resource",
    409: "Not possible in the resource's current state",
    410: "The resource is gone for good (erased)",
    422: "Invalid input; `error.field` names the field",
    429: "Rate limited; see `Retry-After`",
    503: "A dependency is unavailable",
}


# Set on a handler by `api.validation.call_id_path`: `endpoint` then documents the path id.
CALL_ID_PATH = "__call_id_path__"


def _call_id_param() -> Any:
    return openapi.parameter(
        "call_id",
        String(pattern=CALL_ID_RE.pattern, description="server-generated call id"),
        "path",
        required=True,
    )


def query_param(name: str, schema: Any, description: str = "") -> Any:
    return openapi.parameter(name, schema, "query", required=False, description=description)


def endpoint(
    summary: str,
    *,
    tag: str,
    ok: int = 200,
    response: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    errors: Iterable[int] = (),
    secured: bool = False,
    description: str | None = None,
    media: str = "application/json",
) -> Callable[[F], F]:
    """Document one operation: body, success response (`media`: its content type) and the
    error statuses it can answer."""
    responses = [
        Response(
            {media: Component(response)} if response else {media: {}},
            status=ok,
            description="OK",
        )
    ]
    codes = set(errors) | ({401, 403} if secured else set())
    if body is not None:
        codes.add(422)
    responses += [
        Response({"application/json": Component(ErrorBody)}, status=c, description=_ERROR_TEXT[c])
        for c in sorted(codes)
    ]
    kwargs: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "tag": tag,
        "response": responses,
    }
    if body is not None:
        kwargs["body"] = RequestBody({"application/json": Component(body)}, required=body_required)
    if secured:
        kwargs["secured"] = {"bearer": []}
    define = openapi.definition(**kwargs)

    def document(handler: F) -> F:
        if getattr(handler, CALL_ID_PATH, False):
            handler = _call_id_param()(handler)
        return define(handler)  # type: ignore[no-any-return]

    return document


__all__ = ["CALL_ID_PATH", "Float", "Integer", "String", "endpoint", "query_param"]
