"""The control API under /_emulator/: drive calls without WebRTC, inject faults, inspect state.

JSON in and out; errors are `{"error": {"code", "message", "field"}}` with a 4xx status.
Open to loopback clients; from anywhere else it needs `Authorization: Bearer <jwt>` signed
with the emulator's API key and secret (any grants). Protobuf objects in answers (rooms,
participants, tracks, egress infos) are in LiveKit's JSON form, as in webhooks (camelCase).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from livekit.protocol import models
from livekit.protocol.egress import EgressStatus

from .auth import JoinRefused, TokenError, bearer_grants, join_grants
from .emulator import Emulator
from .errors import ControlError
from .faults import FaultError
from .recording import serve_recording
from .twirp import TwirpError

routes = web.RouteTableDef()
EMULATOR = web.AppKey("emulator", Emulator)

_TRACK_TYPES = {"audio": models.AUDIO, "video": models.VIDEO}
# A join token for another room than the one joined: livekit-server takes the token's room.
_DENIED_ROOM = "permissions denied: the token is for another room"
_SOURCES = {
    "microphone": models.MICROPHONE,
    "camera": models.CAMERA,
    "screen_share": models.SCREEN_SHARE,
    "screen_share_audio": models.SCREEN_SHARE_AUDIO,
    "unknown": models.UNKNOWN,
}


def pb(msg: Message) -> dict[str, Any]:
    return MessageToDict(msg)


def _error(status: int, code: str, message: str, field: str = "") -> web.Response:
    body = {"error": {"code": code, "message": message, **({"field": field} if field else {})}}
    return web.json_response(body, status=status)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


@web.middleware
async def control_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Auth for /_emulator/ (loopback or bearer) and one error shape for every failure."""
    if not request.path.startswith("/_emulator/"):
        return await handler(request)
    if not _is_loopback(request.remote):
        emu = request.app[EMULATOR]
        try:
            grants = bearer_grants(
                request.headers.get("Authorization"), emu.config.api_key, emu.config.api_secret
            )
        except TokenError as e:
            return _error(401, "unauthenticated", str(e))
        if grants is None:
            return _error(401, "unauthenticated", "a bearer token is required off loopback")
    try:
        return await handler(request)
    except ControlError as e:
        return _error(e.status, e.code, str(e), e.field)
    except FaultError as e:
        return _error(400, "invalid_argument", str(e), e.field)
    except TwirpError as e:
        return _error(e.status, e.code, e.msg)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ControlError(400, "invalid_json", f"body is not JSON: {e}", "body") from None
    if not isinstance(data, dict):
        raise ControlError(400, "invalid_json", "body must be a JSON object", "body")
    return data


def _field(
    body: dict[str, Any], name: str, typ: type | tuple[type, ...], default: Any = None
) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, typ) or (isinstance(value, bool) and bool not in _as_tuple(typ)):
        raise ControlError(400, "invalid_argument", f"{name} has the wrong type", name)
    return value


def _as_tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def state_of(emu: Emulator) -> dict[str, Any]:
    rooms = []
    for room in emu.rooms.values():
        rooms.append(
            {
                "name": room.name,
                "sid": room.info.sid,
                "auto_agent": emu.auto_agent_for(room.name),
                "room": pb(emu.room_snapshot(room)),
                "participants": [
                    {"role": p.role, "identity": p.info.identity, "info": pb(p.info)}
                    for p in room.participants.values()
                ],
                "dispatches": [pb(d) for d in room.dispatches.values()],
                "data": list(room.data),
            }
        )
    egresses = [
        {
            "egress_id": eg.id,
            "room_name": eg.info.room_name,
            "status": EgressStatus.Name(eg.info.status),
            "recorded_s": round(eg.recorded_s(), 3),
            "advance_s": eg.advance_s,
            "recording_url": eg.info.file_results[0].location if eg.info.file_results else None,
            "info": pb(eg.info),
        }
        for eg in emu.egresses.values()
    ]
    return {
        "rooms": rooms,
        "egresses": egresses,
        "webhooks": {
            "url": emu.webhooks.url,
            "deliveries": [d.to_dict() for d in emu.webhooks.history],
        },
        "faults": emu.faults.list(),
        "sip": {  # counts only: trunks hold credentials; GET /_emulator/sip/calls has the calls
            "inbound_trunks": len(emu.sip_inbound),
            "outbound_trunks": len(emu.sip_outbound),
            "dispatch_rules": len(emu.sip_rules),
            "calls": len(emu.sip_calls),
        },
        "auto_agent": _auto_agent_state(emu),
        "idle": emu.idle(),
    }


def _auto_agent_state(emu: Emulator) -> dict[str, Any]:
    return {
        "enabled": emu.auto_agent,
        "delay_s": emu.auto_agent_delay_s,
        "rooms": emu.auto_agent_rooms,
    }


@routes.get("/_emulator/state")
async def get_state(request: web.Request) -> web.Response:
    return web.json_response(state_of(request.app[EMULATOR]))


@routes.get("/_emulator/idle")
async def get_idle(request: web.Request) -> web.Response:
    return web.json_response({"idle": request.app[EMULATOR].idle()})


@routes.post("/_emulator/reset")
async def reset(request: web.Request) -> web.Response:
    await request.app[EMULATOR].reset()
    return web.json_response({"reset": True})


@routes.get("/_emulator/webhook")
async def get_webhook(request: web.Request) -> web.Response:
    return web.json_response({"url": request.app[EMULATOR].webhooks.url})


@routes.post("/_emulator/webhook")
async def set_webhook(request: web.Request) -> web.Response:
    body = await _body(request)
    if "url" not in body:
        raise ControlError(400, "invalid_argument", "url is required (null disables)", "url")
    url = _field(body, "url", str, "")
    if url and not url.startswith(("http://", "https://")):
        raise ControlError(
            400, "invalid_argument", "url must start with http:// or https://", "url"
        )
    request.app[EMULATOR].webhooks.url = url
    return web.json_response({"url": url})


@routes.get("/_emulator/auto-agent")
async def get_auto_agent(request: web.Request) -> web.Response:
    return web.json_response(_auto_agent_state(request.app[EMULATOR]))


@routes.post("/_emulator/auto-agent")
async def set_auto_agent(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    body = await _body(request)
    enabled = _field(body, "enabled", bool)
    delay = _field(body, "delay_s", (int, float))
    room = _field(body, "room", str)
    if delay is not None:
        if delay < 0:
            raise ControlError(400, "invalid_argument", "delay_s must not be negative", "delay_s")
        emu.auto_agent_delay_s = float(delay)
    if enabled is not None:
        if room:
            emu.auto_agent_rooms[room] = enabled
        else:
            emu.auto_agent = enabled
    return web.json_response(_auto_agent_state(emu))


@routes.post("/_emulator/rooms/{room}/participants")
async def join(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    body = await _body(request)
    attributes = _field(body, "attributes", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        raise ControlError(
            400, "invalid_argument", "attributes must map strings to strings", "attributes"
        )
    room, identity, name = request.match_info["room"], _field(body, "identity", str, ""), ""
    token = _field(body, "token", str, "")
    if token:  # as a client connects: identity and name from a join token for this room
        try:
            grants, room_in_token = join_grants(
                token, emu.config.api_key, emu.config.api_secret, room
            )
        except JoinRefused as e:
            raise ControlError(e.status, "unauthenticated", str(e), "token") from None
        if room_in_token != room:
            raise ControlError(401, "unauthenticated", _DENIED_ROOM, "token")
        identity, name = grants.identity, grants.name
    info = emu.join(
        room,
        identity,
        _field(body, "kind", str, ""),
        name=name or _field(body, "name", str, ""),
        metadata=_field(body, "metadata", str, ""),
        attributes=attributes,
        publish_audio=_field(body, "publish_audio", bool, False),
    )
    return web.json_response({"participant": pb(info)}, status=201)


@routes.delete("/_emulator/rooms/{room}/participants/{identity}")
async def leave(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    room, identity = request.match_info["room"], request.match_info["identity"]
    emu.get_participant(room, identity)
    emu.leave(room, identity, models.CLIENT_INITIATED)
    return web.json_response({"left": identity, "room_open": room in emu.rooms})


@routes.post("/_emulator/rooms/{room}/participants/{identity}/tracks")
async def publish(request: web.Request) -> web.Response:
    body = await _body(request)
    track_type = _field(body, "type", str, "audio")
    source = _field(body, "source", str, "microphone" if track_type == "audio" else "camera")
    if track_type not in _TRACK_TYPES:
        raise ControlError(
            400, "invalid_argument", f"type must be one of {list(_TRACK_TYPES)}", "type"
        )
    if source not in _SOURCES:
        raise ControlError(
            400, "invalid_argument", f"source must be one of {list(_SOURCES)}", "source"
        )
    track = request.app[EMULATOR].publish_track(
        request.match_info["room"],
        request.match_info["identity"],
        track_type=_TRACK_TYPES[track_type],
        source=_SOURCES[source],
        name=_field(body, "name", str, ""),
        muted=_field(body, "muted", bool, False),
    )
    return web.json_response({"track": pb(track)}, status=201)


@routes.post("/_emulator/rooms/{room}/end")
async def end_room(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    room = emu.get_room(request.match_info["room"])
    emu.close_room(room, models.ROOM_END_API_DELETE, models.ROOM_DELETED)
    return web.json_response({"ended": room.name})


@routes.post("/_emulator/egress/{egress_id}/advance")
async def advance(request: web.Request) -> web.Response:
    body = await _body(request)
    seconds = _field(body, "seconds", (int, float))
    if seconds is None or seconds < 0:
        raise ControlError(400, "invalid_argument", "seconds must be a number >= 0", "seconds")
    egress_id = request.match_info["egress_id"]
    total = request.app[EMULATOR].advance_egress(egress_id, float(seconds))
    return web.json_response({"egress_id": egress_id, "recorded_s": round(total, 3)})


@routes.get("/_emulator/recordings/{egress_id}.ogg")
async def recording(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    egress_id = request.match_info["egress_id"]
    if not emu.config.serve_recordings:  # Egress serves nothing: the file is in storage
        raise ControlError(
            404,
            "not_found",
            "recordings are served only with serve_recordings (debug)",
            "egress_id",
        )
    eg = emu.egresses.get(egress_id)
    if eg is None or eg.recording is None or not eg.recording.path.exists():
        raise ControlError(404, "not_found", "no recording for this egress (yet)", "egress_id")
    return await serve_recording(request, eg.recording, egress_id, emu.faults)


@routes.get("/_emulator/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[EMULATOR].faults.list()})


@routes.post("/_emulator/faults")
async def add_fault(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    fault = emu.faults.add(await _body(request))
    if fault.kind == "egress_end":
        emu.apply_egress_end_faults()  # an egress already recording takes it now
    return web.json_response({"fault": fault.to_dict()}, status=201)


@routes.delete("/_emulator/faults")
async def clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[EMULATOR].faults.clear()})


@routes.delete("/_emulator/faults/{fault_id}")
async def delete_fault(request: web.Request) -> web.Response:
    if not request.app[EMULATOR].faults.remove(request.match_info["fault_id"]):
        raise ControlError(404, "not_found", "no such fault", "fault_id")
    return web.json_response({"cleared": 1})
