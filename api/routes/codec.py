"""Codec endpoint for the Temporal Web UI (`/codec/decode`, `/codec/encode`).

The UI posts `{"payloads": [<Payload in proto JSON: base64 metadata values and data>]}` and
shows what comes back; configure it with this API's URL + `/codec` as the codec endpoint. Only
supervisors and admins may decode (payloads hold customer data): by API token, by the session
cookie of a dashboard sign-in (`api/routes/session.py`; the UI's includeCredentials), or by the
UI's OIDC access token naming our audience (`api/codec_auth.py`).

Encoding is admin-only, by bearer token (API token or OIDC), never by the cookie: an encoded
payload is input the workers trust (a signal, an erasure, a pipeline's object keys) sealed
under the production key. The Temporal UI runs with its write actions off and only decodes. CORS, with credentials, is granted to the UI's origin(s)
only (setting CODEC_CORS_ORIGINS, default the dev UI on :8233).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse
from temporalio.api.common.v1 import Payload

from api.auth import CODEC_ENCODE, bearer_from_header
from api.codec_auth import authenticate_codec
from api.docs import endpoint
from api.errors import Forbidden, ValidationFailed
from api.schemas import CodecRequest, CodecResponse
from api.validation import parse_body
from core.codec import PayloadDecryptError
from core.log import get_logger

bp = Blueprint("codec")
log = get_logger("api.codec")

DEFAULT_UI_ORIGINS = "http://localhost:8233,http://127.0.0.1:8233"
_ALLOW_HEADERS = "authorization, content-type, x-namespace"


def allowed_origins(request: Request) -> set[str]:
    raw = request.app.ctx.settings.CODEC_CORS_ORIGINS or DEFAULT_UI_ORIGINS
    return {o.strip().rstrip("/") for o in raw.split(",") if o.strip()}


def _cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin", "")
    if origin.rstrip("/") not in allowed_origins(request):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": _ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


@bp.on_response
async def _cors(request: Request, response: HTTPResponse) -> None:
    response.headers.update(_cors_headers(request))


async def preflight(request: Request) -> HTTPResponse:
    """Preflight needs no token (browsers never send one on OPTIONS)."""
    return HTTPResponse(status=204)


bp.add_route(preflight, "/codec/decode", methods=["OPTIONS"], name="preflight_decode")
bp.add_route(preflight, "/codec/encode", methods=["OPTIONS"], name="preflight_encode")


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{field}: is not base64", field=field) from None


def _payloads(body: CodecRequest) -> list[Payload]:
    return [
        Payload(
            metadata={k: _b64(v, f"payloads.{i}.metadata.{k}") for k, v in item.metadata.items()},
            data=_b64(item.data, f"payloads.{i}.data"),
        )
        for i, item in enumerate(body.payloads)
    ]


def _render(payloads: list[Payload]) -> dict[str, Any]:
    """Temporal's JSON form: base64 metadata values and data."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


async def _apply(request: Request, op: str) -> HTTPResponse:
    body = parse_body(request, CodecRequest)
    payloads = _payloads(body)
    codec = request.app.ctx.res.codec
    if codec is None or not payloads:
        return json(_render(payloads))
    if op == "encode":
        return json(_render(list(await codec.encode(payloads))))
    try:
        decoded = list(await codec.decode(payloads))
    except PayloadDecryptError as exc:
        # Tampered, or encrypted with a key this API does not have.
        raise ValidationFailed(f"payloads: cannot be decoded ({exc})", field="payloads") from exc
    return json(_render(decoded))


@bp.post("/codec/decode")
@endpoint(
    "Decode payloads for the Temporal Web UI",
    tag="codec",
    body=CodecRequest,
    response=CodecResponse,
    secured=True,
)
async def decode(request: Request) -> HTTPResponse:
    await authenticate_codec(request)
    return await _apply(request, "decode")


@bp.post("/codec/encode")
@endpoint(
    "Encode payloads under the payload key (admin, bearer token only)",
    tag="codec",
    body=CodecRequest,
    response=CodecResponse,
    secured=True,
)
async def encode(request: Request) -> HTTPResponse:
    principal = await authenticate_codec(request)
    if not principal.may(CODEC_ENCODE):
        raise Forbidden(f"role {principal.role} may not encode payloads; needs admin")
    if bearer_from_header(request) is None:
        raise Forbidden("encoding needs an admin bearer token, not the dashboard's codec cookie")
    return await _apply(request, "encode")
