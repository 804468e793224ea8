"""The emulated LiveKit: rooms, participants, agent dispatch and egress, all in memory.

Everything runs on one event loop, so state changes need no locks; recordings are encoded in
a worker thread. A room closes (participants leave, `room_finished`, its egresses end
EGRESS_COMPLETE with their file) when it is deleted or when its last non-agent participant
leaves; agents still in the room leave first, as an agent whose caller hung up does.
Egress lives in egress.py, SIP (phone calls in and out) in sip.py.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.protocol import agent as agent_pb
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import egress as egress_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb
from livekit.protocol.webhook import WebhookEvent

from core.log import get_logger

from .config import EmulatorConfig
from .egress import ACTIVE_EGRESS, Egress, EgressMixin
from .errors import ControlError
from .faults import Faults
from .ids import new_id, now_ns
from .sip import Outcome, SipCall, SipMixin
from .sip_rules import mask_number
from .twirp import TwirpError
from .webhooks import WebhookSender

log = get_logger("devstack.livekit")

ROLES = ("customer", "agent", "supervisor", "sip")
MAX_ROOM_NAME = 256
# The codecs a default livekit-server enables, as Room.enabled_codecs reports them.
_CODECS = ("audio/opus", "audio/red", "video/VP8", "video/H264", "video/VP9", "video/AV1")


@dataclass
class Participant:
    info: models.ParticipantInfo
    role: str

    @property
    def is_agent(self) -> bool:
        return self.info.kind == models.ParticipantInfo.AGENT


@dataclass
class Room:
    info: models.Room
    participants: dict[str, Participant] = field(default_factory=dict)
    dispatches: dict[str, dispatch_pb.AgentDispatch] = field(default_factory=dict)
    data: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    had_non_agent: bool = False
    # Seconds the room stays open after its last non-agent left (LiveKit's departure_timeout),
    # honoured only when the creator asked for one; 0 closes it at once (the default here).
    departure_wait_s: int = 0
    departures: int = 0  # non-agent departures so far (a rejoin makes an earlier wait stale)

    @property
    def name(self) -> str:
        return self.info.name


class Emulator(EgressMixin, SipMixin):
    """State and behaviour; the Twirp services and the control API call into it."""

    def __init__(self, config: EmulatorConfig, recordings_dir: Path) -> None:
        self.config = config
        self.recordings_dir = recordings_dir
        self.base_url = ""  # set by the server once the port is bound
        self.faults = Faults()
        self.webhooks = WebhookSender(
            config.api_key,
            config.api_secret,
            config.webhook_url,
            self.faults,
            retries=config.webhook_retries,
            backoff_s=config.webhook_backoff_s,
            timeout_s=config.webhook_timeout_s,
        )
        self.rooms: dict[str, Room] = {}
        self.egresses: dict[str, Egress] = {}
        self.auto_agent = config.auto_agent
        self.auto_agent_delay_s = config.auto_agent_delay_s
        self.auto_agent_rooms: dict[str, bool] = {}
        self.sip_inbound: dict[str, sip_pb.SIPInboundTrunkInfo] = {}
        self.sip_outbound: dict[str, sip_pb.SIPOutboundTrunkInfo] = {}
        self.sip_rules: dict[str, sip_pb.SIPDispatchRuleInfo] = {}
        self.sip_calls: dict[str, SipCall] = {}
        self.sip_outcomes: dict[str, Outcome] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cancel = threading.Event()
        # Encodes run here (two at a time) so that stop() can wait for them to let go of files.
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="livekit-emulator-encode")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.webhooks.start()

    async def stop(self) -> None:
        """End everything without webhooks: cancel timers and encodes, flush queued webhooks."""
        self._cancel.set()
        await self._cancel_tasks(self._tasks)
        await asyncio.to_thread(self._executor.shutdown, True)
        await self.webhooks.stop()

    async def reset(self) -> None:
        """Forget every room, egress, fault and override, silently (no webhooks)."""
        self._cancel.set()
        await self._cancel_tasks(self._tasks)
        await asyncio.to_thread(self._executor.shutdown, True)
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="livekit-emulator-encode")
        self._cancel = threading.Event()
        for eg in self.egresses.values():
            if eg.recording is not None:
                eg.recording.path.unlink(missing_ok=True)
        self.rooms.clear()
        self.egresses.clear()
        self.faults.clear()
        self.auto_agent_rooms.clear()
        self.sip_reset()
        self.auto_agent = self.config.auto_agent
        self.auto_agent_delay_s = self.config.auto_agent_delay_s

    @staticmethod
    async def _cancel_tasks(tasks: set[asyncio.Task[Any]]) -> None:
        pending = list(tasks)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any], *owners: set[asyncio.Task[Any]]) -> None:
        task = asyncio.create_task(coro)
        for group in (self._tasks, *owners):
            group.add(task)
            task.add_done_callback(group.discard)
        task.add_done_callback(_log_task_error)

    def idle(self) -> bool:
        """True when no timer, encode or webhook is pending (tests wait for this)."""
        return not self._tasks and self.webhooks.idle()

    # -- webhooks ----------------------------------------------------------------------------

    def _emit(self, name: str, room: Room | None = None, **fields: Any) -> None:
        event = WebhookEvent(event=name, **fields)
        if room is not None:
            event.room.CopyFrom(self.room_snapshot(room))
        self.webhooks.emit(event)

    # -- rooms -------------------------------------------------------------------------------

    def room_snapshot(self, room: Room) -> models.Room:
        visible = [p for p in room.participants.values() if not p.info.permission.hidden]
        room.info.num_participants = len(visible)
        room.info.num_publishers = sum(1 for p in visible if p.info.is_publisher)
        room.info.active_recording = any(
            eg.info.room_name == room.name and eg.info.status in ACTIVE_EGRESS[:2]
            for eg in self.egresses.values()
        )
        snap = models.Room()
        snap.CopyFrom(room.info)
        return snap

    def get_room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise TwirpError("not_found", "requested room does not exist")
        return room

    def create_room(self, req: room_pb.CreateRoomRequest) -> tuple[Room, bool]:
        """The room named in `req`, created (room_started, agent dispatches, auto egress) if new."""
        if not req.name:
            raise TwirpError("invalid_argument", "no room name")
        if len(req.name) > MAX_ROOM_NAME:
            raise TwirpError(
                "invalid_argument", f"room name length exceeds limits: max length {MAX_ROOM_NAME}"
            )
        existing = self.rooms.get(req.name)
        if existing is not None:
            return existing, False
        now = now_ns()
        info = models.Room(
            sid=new_id("RM_"),
            name=req.name,
            empty_timeout=req.empty_timeout or 300,
            departure_timeout=req.departure_timeout or 20,
            max_participants=req.max_participants,
            creation_time=now // 1_000_000_000,
            creation_time_ms=now // 1_000_000,
            metadata=req.metadata,
            enabled_codecs=[models.Codec(mime=m) for m in _CODECS],
            version=models.TimedVersion(unix_micro=now // 1000),
        )
        room = Room(info, departure_wait_s=req.departure_timeout)
        self.rooms[req.name] = room
        log.info("room_started", room=req.name, sid=info.sid)
        self._emit("room_started", room)
        for d in req.agents:
            self.create_dispatch(req.name, d.agent_name, d.metadata, dict(d.attributes))
        if req.HasField("egress") and req.egress.HasField("room"):
            auto = egress_pb.RoomCompositeEgressRequest()
            auto.CopyFrom(req.egress.room)
            auto.room_name = req.name
            self.start_egress(auto)
        return room, True

    def ensure_room(self, name: str) -> Room:
        return self.create_room(room_pb.CreateRoomRequest(name=name))[0]

    def close_room(
        self,
        room: Room,
        end_reason: int = models.ROOM_END_UNKNOWN,
        disconnect: int = models.CLIENT_INITIATED,
    ) -> None:
        """Everyone leaves, the room's egresses end, then room_finished."""
        for identity in list(room.participants):
            self.leave(room.name, identity, disconnect, closing=True)
        for t in list(room.tasks):
            t.cancel()
        for d in room.dispatches.values():
            for job in d.state.jobs:
                if job.state.status in (agent_pb.JS_PENDING, agent_pb.JS_RUNNING):
                    job.state.status = agent_pb.JS_SUCCESS
                    job.state.ended_at = now_ns()
                    job.state.updated_at = job.state.ended_at
        for eg in list(self.egresses.values()):
            if eg.info.room_name == room.name and eg.info.status in ACTIVE_EGRESS[:2]:
                self.end_egress(eg)
        self.rooms.pop(room.name, None)
        log.info("room_finished", room=room.name, sid=room.info.sid)
        extra = {"room_end_reason": end_reason} if end_reason else {}
        self._emit("room_finished", room, **extra)

    # -- participants ------------------------------------------------------------------------

    def join(
        self,
        room_name: str,
        identity: str,
        role: str,
        *,
        name: str = "",
        metadata: str = "",
        attributes: dict[str, str] | None = None,
        publish_audio: bool = False,
    ) -> models.ParticipantInfo:
        """A participant joins (the room is created if needed, as LiveKit auto-creates rooms)."""
        if role not in ROLES:
            raise ControlError(400, "invalid_argument", f"kind must be one of {ROLES}", "kind")
        if not identity:
            raise ControlError(400, "invalid_argument", "identity is required", "identity")
        room = self.ensure_room(room_name)
        if identity in room.participants:
            self.leave(room_name, identity, models.DUPLICATE_IDENTITY, closing=True)
        elif 0 < room.info.max_participants <= len(room.participants):
            raise ControlError(409, "room_full", f"room {room_name} is full", "room")
        now = now_ns()
        permission = models.ParticipantPermission(
            can_subscribe=True, can_publish=True, can_publish_data=True
        )
        kind = models.ParticipantInfo.STANDARD
        if role == "agent":
            kind = models.ParticipantInfo.AGENT
            permission.agent = True
        elif role == "sip":
            kind = models.ParticipantInfo.SIP
        elif role == "supervisor":
            permission.hidden = True
            permission.can_publish = False
            permission.can_publish_data = False
        info = models.ParticipantInfo(
            sid=new_id("PA_"),
            identity=identity,
            name=name,
            state=models.ParticipantInfo.ACTIVE,
            metadata=metadata,
            joined_at=now // 1_000_000_000,
            joined_at_ms=now // 1_000_000,
            version=1,
            permission=permission,
            kind=kind,
            attributes=attributes or {},
        )
        p = Participant(info, role)
        room.participants[identity] = p
        if not p.is_agent:
            room.had_non_agent = True
        log.info("participant_joined", room=room_name, identity=_shown(p), role=role)
        self._emit("participant_joined", room, participant=info)
        if publish_audio:
            self.publish_track(room_name, identity)
        if role == "sip":
            self.sip_room_changed(room_name)  # a second SIP caller, or tracks to hear
        return info

    def get_participant(self, room_name: str, identity: str) -> Participant:
        room = self.rooms.get(room_name)
        p = room.participants.get(identity) if room else None
        if p is None:
            raise TwirpError("not_found", "participant does not exist")
        return p

    def leave(self, room_name: str, identity: str, reason: int, *, closing: bool = False) -> None:
        """A participant leaves (track_unpublished for each track, then participant_left).

        Unless the room is already closing, the last non-agent leaving closes the room.
        """
        room = self.get_room(room_name)
        p = room.participants.pop(identity, None)
        if p is None:
            raise TwirpError("not_found", "participant does not exist")
        p.info.state = models.ParticipantInfo.DISCONNECTED
        p.info.disconnect_reason = reason  # type: ignore[assignment]
        if p.info.kind == models.ParticipantInfo.SIP:
            self.sip_participant_left(room_name, p.info, reason)
        for track in p.info.tracks:
            self._emit("track_unpublished", room, participant=p.info, track=track)
        log.info("participant_left", room=room_name, identity=_shown(p),
                 reason=models.DisconnectReason.Name(reason))  # fmt: skip
        self._emit("participant_left", room, participant=p.info)
        if closing or p.is_agent or not room.had_non_agent:
            return
        if any(not q.is_agent for q in room.participants.values()):
            return
        if room.departure_wait_s:
            # As LiveKit does: time for the participant to reconnect before the room closes.
            room.departures += 1
            self._spawn(self._close_after_departure(room, room.departures), room.tasks)
            return
        self.close_room(room)

    async def _close_after_departure(self, room: Room, departure: int) -> None:
        await asyncio.sleep(room.departure_wait_s)
        if self.rooms.get(room.name) is not room or room.departures != departure:
            return
        if not any(not q.is_agent for q in room.participants.values()):
            self.close_room(room)

    def publish_track(
        self,
        room_name: str,
        identity: str,
        *,
        track_type: int = models.AUDIO,
        source: int = models.MICROPHONE,
        name: str = "",
        muted: bool = False,
    ) -> models.TrackInfo:
        p = self.get_participant(room_name, identity)
        if p.info.permission.hidden and not p.info.permission.can_publish:
            raise ControlError(403, "permission_denied", "participant may not publish", "identity")
        track = models.TrackInfo(
            sid=new_id("TR_"),
            type=track_type,  # type: ignore[arg-type]
            source=source,  # type: ignore[arg-type]
            name=name,
            muted=muted,
            mime_type="audio/opus" if track_type == models.AUDIO else "video/VP8",
            version=models.TimedVersion(unix_micro=now_ns() // 1000),
        )
        p.info.tracks.append(track)
        p.info.is_publisher = True
        p.info.version += 1
        self._emit("track_published", self.rooms[room_name], participant=p.info, track=track)
        if track_type == models.AUDIO:
            self.sip_room_changed(room_name)  # a ringing caller now hears someone
        return track

    # -- agent dispatch ----------------------------------------------------------------------

    def auto_agent_for(self, room_name: str) -> bool:
        return self.auto_agent_rooms.get(room_name, self.auto_agent)

    def create_dispatch(
        self, room_name: str, agent_name: str, metadata: str, attributes: dict[str, str]
    ) -> dispatch_pb.AgentDispatch:
        """Record an explicit dispatch (creating the room) and, unless disabled, join an agent.

        A room that is gone is created again, as livekit-server does with `room.auto_create`
        on, its default (pkg/service/agent_dispatch_service.go `CreateDispatch`)."""
        room = self.ensure_room(room_name)
        d = dispatch_pb.AgentDispatch(
            id=new_id("AD_"),
            agent_name=agent_name,
            room=room_name,
            metadata=metadata,
            attributes=attributes,
            state=dispatch_pb.AgentDispatchState(created_at=now_ns()),
        )
        room.dispatches[d.id] = d
        log.info("agent_dispatched", room=room_name, dispatch_id=d.id, agent_name=agent_name)
        if self.auto_agent_for(room_name):
            self._spawn(self._auto_agent(room, d.id), room.tasks)
        return d

    async def _auto_agent(self, room: Room, dispatch_id: str) -> None:
        await asyncio.sleep(self.auto_agent_delay_s)
        d = room.dispatches.get(dispatch_id)
        if d is None or self.rooms.get(room.name) is not room:
            return
        job_id = new_id("AJ_")
        identity = f"agent-{job_id}"
        now = now_ns()
        job = agent_pb.Job(
            id=job_id,
            dispatch_id=d.id,
            type=agent_pb.JT_ROOM,
            room=self.room_snapshot(room),
            namespace="",
            metadata=d.metadata,
            agent_name=d.agent_name,
            attributes=dict(d.attributes),
            state=agent_pb.JobState(
                status=agent_pb.JS_RUNNING,
                started_at=now,
                updated_at=now,
                participant_identity=identity,
                worker_id=new_id("AW_"),
            ),
        )
        d.state.jobs.append(job)
        self.join(
            room.name,
            identity,
            "agent",
            name=d.agent_name or "agent",
            attributes={"lk.agent.state": "listening"},
            publish_audio=True,
        )

    def dispatch_room(self, name: str) -> Room:
        """The room a ListDispatch/DeleteDispatch is routed to. livekit-server sends these over
        psrpc to the room's own topic (pkg/service/agent_dispatch_service.go, livekit/psrpc
        pkg/client/rpc.go): with no room, no server claims the request and Twirp answers
        503 `unavailable` "no response from servers", not `not_found`."""
        room = self.rooms.get(name)
        if room is None:
            raise TwirpError("unavailable", "no response from servers")
        return room

    def delete_dispatch(self, room_name: str, dispatch_id: str) -> dispatch_pb.AgentDispatch:
        room = self.dispatch_room(room_name)
        d = room.dispatches.pop(dispatch_id, None)
        if d is None:
            raise TwirpError("not_found", "dispatch not found")
        d.state.deleted_at = now_ns()
        return d

    # -- data --------------------------------------------------------------------------------

    def record_data(self, req: room_pb.SendDataRequest) -> None:
        room = self.get_room(req.room)
        entry: dict[str, Any] = {
            "topic": req.topic,
            "kind": models.DataPacket.Kind.Name(req.kind),
            "destination_identities": list(req.destination_identities),
            "data_base64": base64.b64encode(req.data).decode(),
            "at": time.time(),
        }
        text = _as_text(req.data)
        if text is not None:  # binary payloads are kept as base64 only
            entry["text"] = text
        room.data.append(entry)


def _shown(p: Participant) -> str:
    """The identity as logs show it: a phone caller's number masked to its last digits."""
    if p.role != "sip":
        return p.info.identity
    return "sip_..." + mask_number(p.info.identity)


def _as_text(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", error=repr(task.exception()))
