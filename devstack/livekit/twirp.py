"""Twirp over aiohttp, as livekit-server speaks it.

POST `/twirp/livekit.<Service>/<Method>` with `Content-Type: application/protobuf` (what
livekit-api sends) or `application/json`; the answer has the same encoding. Errors are JSON
`{"code", "msg"[, "meta"]}` with Twirp's HTTP status for the code. A path that names no method
of the LiveKit protocol is `bad_route` (404) as Twirp answers; a method the protocol defines
but the emulator does not emulate is `unimplemented` (501).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from livekit.protocol import agent_dispatch, egress, ingress, room, sip

# Twirp's error codes and the HTTP status each maps to (twitchtv/twirp errors.go).
STATUS_BY_CODE = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}

PREFIX = "/twirp/"

# Every method of the services livekit-api has clients for, from the protocol's descriptors.
METHODS: dict[str, MethodDescriptor] = {
    f"{svc.full_name}/{m.name}": m
    for mod in (room, egress, agent_dispatch, sip, ingress)
    for svc in mod.DESCRIPTOR.services_by_name.values()
    for m in svc.methods
}


class TwirpError(Exception):
    """An error answered to a Twirp client: `code` is one of STATUS_BY_CODE."""

    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None, status: int = 0):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.meta = meta or {}
        self.status = status or STATUS_BY_CODE.get(code, 500)

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return web.json_response(body, status=self.status)


Handler = Callable[[Message, Any], Awaitable[Message]]


def parse_route(path: str) -> tuple[str, MethodDescriptor]:
    """`/twirp/livekit.RoomService/CreateRoom` -> ("livekit.RoomService/CreateRoom", descriptor)."""
    key = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
    method = METHODS.get(key)
    if method is None:
        raise TwirpError(
            "bad_route",
            f"no handler for path {path!r}",
            {"twirp_invalid_route": f"POST {path}"},
        )
    return key, method


def decode_request(method: MethodDescriptor, content_type: str, body: bytes) -> Message:
    """Decode the request message; raise `malformed` as Twirp does for an undecodable body."""
    msg = GetMessageClass(method.input_type)()
    if content_type == "application/json":
        try:
            json_format.Parse(body.decode() or "{}", msg, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as e:
            raise TwirpError("malformed", f"the json request could not be decoded: {e}") from None
    else:
        try:
            msg.ParseFromString(body)
        except DecodeError as e:
            raise TwirpError(
                "malformed", f"the protobuf request could not be decoded: {e}"
            ) from None
    return msg


def content_type_of(request: web.Request, path: str) -> str:
    """The request's encoding; anything but protobuf or JSON is a `bad_route` in Twirp."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/protobuf"):
        raise TwirpError(
            "bad_route",
            f"unexpected Content-Type: {ctype!r}",
            {"twirp_invalid_route": f"{request.method} {path}"},
        )
    return ctype


def encode_response(msg: Message, content_type: str) -> web.Response:
    if content_type == "application/json":
        # Twirp's default JSON: proto field names, zero values included.
        data = json_format.MessageToDict(
            msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return web.Response(
            body=json.dumps(data).encode(), status=200, content_type="application/json"
        )
    return web.Response(
        body=msg.SerializeToString(), status=200, content_type="application/protobuf"
    )
