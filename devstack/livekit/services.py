"""The Twirp methods the emulator answers: RoomService, Egress and AgentDispatchService
(and SIP, from sip_services.py).

Each checks the grant livekit-server checks for it, then acts on the Emulator. Methods of
the protocol that are not here answer `unimplemented`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import egress as egress_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb

from .auth import Grants, require, require_admin
from .egress import ACTIVE_EGRESS
from .emulator import Emulator
from .sip_services import SIP_HANDLERS
from .twirp import TwirpError

Method = Callable[..., Message | Awaitable[Message]]


def create_room(emu: Emulator, req: room_pb.CreateRoomRequest, g: Grants | None) -> Message:
    require(g, "roomCreate")
    room, _ = emu.create_room(req)
    return emu.room_snapshot(room)


def list_rooms(emu: Emulator, req: room_pb.ListRoomsRequest, g: Grants | None) -> Message:
    require(g, "roomList")
    names = set(req.names)
    rooms = [emu.room_snapshot(r) for r in emu.rooms.values() if not names or r.name in names]
    return room_pb.ListRoomsResponse(rooms=rooms)


def delete_room(emu: Emulator, req: room_pb.DeleteRoomRequest, g: Grants | None) -> Message:
    require(g, "roomCreate")
    room = emu.get_room(req.room)
    emu.close_room(room, models.ROOM_END_API_DELETE, models.ROOM_DELETED)
    return room_pb.DeleteRoomResponse()


def list_participants(
    emu: Emulator, req: room_pb.ListParticipantsRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    room = emu.rooms.get(req.room)
    infos = [p.info for p in room.participants.values()] if room else []
    return room_pb.ListParticipantsResponse(participants=infos)


def get_participant(
    emu: Emulator, req: room_pb.RoomParticipantIdentity, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    return emu.get_participant(req.room, req.identity).info


def remove_participant(
    emu: Emulator, req: room_pb.RoomParticipantIdentity, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    emu.get_participant(req.room, req.identity)
    emu.leave(req.room, req.identity, models.PARTICIPANT_REMOVED)
    return room_pb.RemoveParticipantResponse()


def mute_published_track(
    emu: Emulator, req: room_pb.MuteRoomTrackRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    p = emu.get_participant(req.room, req.identity)
    track = next((t for t in p.info.tracks if t.sid == req.track_sid), None)
    if track is None:
        raise TwirpError("not_found", "track is not found")
    if not req.muted and track.muted:
        # livekit-server's default config (room.enable_remote_unmute: false)
        raise TwirpError("failed_precondition", "remote unmute not enabled")
    track.muted = req.muted
    p.info.version += 1
    return room_pb.MuteRoomTrackResponse(track=track)


def update_participant(
    emu: Emulator, req: room_pb.UpdateParticipantRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    p = emu.get_participant(req.room, req.identity)
    if req.metadata:
        p.info.metadata = req.metadata
    if req.name:
        p.info.name = req.name
    if req.HasField("permission"):
        p.info.permission.CopyFrom(req.permission)
    for key, value in req.attributes.items():
        if value:
            p.info.attributes[key] = value
        else:  # an empty value deletes the attribute, as in LiveKit
            p.info.attributes.pop(key, None)
    p.info.version += 1
    return p.info


def update_subscriptions(
    emu: Emulator, req: room_pb.UpdateSubscriptionsRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    emu.get_participant(req.room, req.identity)
    return room_pb.UpdateSubscriptionsResponse()


def send_data(emu: Emulator, req: room_pb.SendDataRequest, g: Grants | None) -> Message:
    require_admin(g, req.room)
    if len(req.nonce) not in (0, 16):
        raise TwirpError(
            "invalid_argument",
            f"nonce should be 16-bytes or not present, got: {len(req.nonce)} bytes",
        )
    emu.record_data(req)
    return room_pb.SendDataResponse()


def update_room_metadata(
    emu: Emulator, req: room_pb.UpdateRoomMetadataRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    room = emu.get_room(req.room)
    room.info.metadata = req.metadata
    return emu.room_snapshot(room)


def start_room_composite_egress(
    emu: Emulator, req: egress_pb.RoomCompositeEgressRequest, g: Grants | None
) -> Message:
    require(g, "roomRecord")
    return emu.start_egress(req)


def stop_egress(emu: Emulator, req: egress_pb.StopEgressRequest, g: Grants | None) -> Message:
    require(g, "roomRecord")
    return emu.stop_egress(req.egress_id)


def list_egress(emu: Emulator, req: egress_pb.ListEgressRequest, g: Grants | None) -> Message:
    require(g, "roomRecord")
    items = [
        eg.info
        for eg in emu.egresses.values()
        if (not req.room_name or eg.info.room_name == req.room_name)
        and (not req.egress_id or eg.id == req.egress_id)
        and (not req.active or eg.info.status in ACTIVE_EGRESS)
    ]
    return egress_pb.ListEgressResponse(items=items)


def update_layout(emu: Emulator, req: egress_pb.UpdateLayoutRequest, g: Grants | None) -> Message:
    require(g, "roomRecord")
    eg = emu.get_egress(req.egress_id)
    if eg.info.status not in ACTIVE_EGRESS[:2]:
        name = egress_pb.EgressStatus.Name(eg.info.status)
        raise TwirpError("failed_precondition", f"egress with status {name} cannot be updated")
    eg.info.room_composite.layout = req.layout
    return eg.info


def create_dispatch(
    emu: Emulator, req: dispatch_pb.CreateAgentDispatchRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    return emu.create_dispatch(req.room, req.agent_name, req.metadata, dict(req.attributes))


def list_dispatch(
    emu: Emulator, req: dispatch_pb.ListAgentDispatchRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    room = emu.dispatch_room(req.room)
    found = [d for d in room.dispatches.values() if not req.dispatch_id or d.id == req.dispatch_id]
    return dispatch_pb.ListAgentDispatchResponse(agent_dispatches=found)


def delete_dispatch(
    emu: Emulator, req: dispatch_pb.DeleteAgentDispatchRequest, g: Grants | None
) -> Message:
    require_admin(g, req.room)
    return emu.delete_dispatch(req.room, req.dispatch_id)


HANDLERS: dict[str, Method] = {
    "livekit.RoomService/CreateRoom": create_room,
    "livekit.RoomService/ListRooms": list_rooms,
    "livekit.RoomService/DeleteRoom": delete_room,
    "livekit.RoomService/ListParticipants": list_participants,
    "livekit.RoomService/GetParticipant": get_participant,
    "livekit.RoomService/RemoveParticipant": remove_participant,
    "livekit.RoomService/MutePublishedTrack": mute_published_track,
    "livekit.RoomService/UpdateParticipant": update_participant,
    "livekit.RoomService/UpdateSubscriptions": update_subscriptions,
    "livekit.RoomService/SendData": send_data,
    "livekit.RoomService/UpdateRoomMetadata": update_room_metadata,
    "livekit.Egress/StartRoomCompositeEgress": start_room_composite_egress,
    "livekit.Egress/StopEgress": stop_egress,
    "livekit.Egress/ListEgress": list_egress,
    "livekit.Egress/UpdateLayout": update_layout,
    "livekit.AgentDispatchService/CreateDispatch": create_dispatch,
    "livekit.AgentDispatchService/ListDispatch": list_dispatch,
    "livekit.AgentDispatchService/DeleteDispatch": delete_dispatch,
    **SIP_HANDLERS,
}
