"""Turn request bodies, query strings and path ids into validated values, or a 422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sanic import Request

from api.docs import CALL_ID_PATH
from api.errors import ValidationFailed
from core.eventlog import clean
from core.models import is_call_id

M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def _raise_from(exc: ValidationError, prefix: str = "") -> None:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "body"
    field = f"{prefix}{loc}"
    what = _MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    raise ValidationFailed(f"{field}: {what}", field=field) from None


def parse_body(
    request: Request, model: type[M], *, allow_empty: bool = False, repair: bool = False
) -> M:
    """Parse the JSON object body into `model`. An empty body counts as `{}` when `allow_empty`.

    With `repair`, text PostgreSQL cannot hold (NUL, an unpaired surrogate) is replaced by
    U+FFFD (`core.eventlog.clean`) instead of refused: for words someone said, which are
    stored as heard rather than lost."""
    raw = request.body or b""
    if not raw.strip():
        if not allow_empty:
            raise ValidationFailed("body: a JSON object is required", field="body")
        data: object = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ValidationFailed("body: is not valid JSON", field="body") from None
        except RecursionError:
            # `"[" * 200000` exhausts the decoder's recursion: hostile input, not a server fault.
            raise ValidationFailed("body: is nested too deeply", field="body") from None
    if not isinstance(data, dict):
        raise ValidationFailed("body: must be a JSON object", field="body")
    if repair:
        try:
            data = clean(data)
        except RecursionError:
            raise ValidationFailed("body: is nested too deeply", field="body") from None
    try:
        # JSON may spell an unpaired surrogate (`"\\ud800"`), which no UTF-8 consumer
        # (PostgreSQL, Temporal, pg_notify) can take: refuse it here, not with a 500 later.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValidationFailed("body: contains an unpaired surrogate", field="body") from None
    except RecursionError:
        raise ValidationFailed("body: is nested too deeply", field="body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_from(exc)
        raise  # unreachable: _raise_from always raises
    except RecursionError:
        raise ValidationFailed("body: is nested too deeply", field="body") from None


def parse_query(request: Request, model: type[M], *, ignore: frozenset[str] = frozenset()) -> M:
    """Parse query parameters into `model` (lax types: "50" is an int); unknown ones are refused."""
    data: dict[str, str] = {}
    for key, values in request.args.items():
        if key in ignore:
            continue
        if len(values) != 1:
            raise ValidationFailed(f"{key}: must be given once", field=key)
        data[key] = values[0]
    try:
        return model.model_validate(data, strict=False)
    except ValidationError as exc:
        _raise_from(exc)
        raise


def check_call_id(call_id: str) -> str:
    """A path id that cannot be a call id is a 422 naming `call_id` (an unknown valid one is 404)."""
    if not is_call_id(call_id):
        raise ValidationFailed("call_id: is not a call id", field="call_id")
    return call_id


def call_id_path(handler: H) -> H:
    """For a route with `<call_id>` in its path: a 422 naming `call_id` before the handler body
    runs, and the path parameter in the OpenAPI document (`api.docs.endpoint` reads the mark).

    Goes directly above the handler, under `@require`: authentication still answers first."""

    @wraps(handler)
    async def checked(request: Request, call_id: str, *args: Any, **kwargs: Any) -> Any:
        check_call_id(call_id)
        return await handler(request, call_id, *args, **kwargs)

    # `wraps` copies __dict__, so the mark survives the decorators stacked above this one.
    setattr(checked, CALL_ID_PATH, True)
    return checked  # type: ignore[return-value]
