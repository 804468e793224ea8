"""LiveKit webhook event -> the call workflow's signal (name, argument), and nothing else.

The signal id is derived from the webhook's own id (`lk-<event id>`), so a resent or replayed
webhook carries the same id and the workflow's de-duplication makes it change nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from livekit.protocol.egress import EgressInfo
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from core.livekit import (
    CUSTOMER_IDENTITY_PREFIX,
    REP_IDENTITY_PREFIX,
    SUPERVISOR_IDENTITY_PREFIX,
    egress_state,
)
from core.models import (
    SIGNAL_EGRESS_ENDED,
    SIGNAL_EGRESS_UPDATED,
    SIGNAL_PARTICIPANT_JOINED,
    SIGNAL_PARTICIPANT_LEFT,
    SIGNAL_ROOM_FINISHED,
    EgressUpdate,
    ParticipantJoined,
    ParticipantLeft,
    RoomFinished,
    call_id_from_room,
    is_phone_room,
)


@dataclass(frozen=True)
class Routed:
    call_id: str
    signal: str
    arg: Any
    # An inbound phone call's room: anyone joining (the caller, the agent) starts the call if
    # nothing has yet (signal-with-start: whichever comes first starts it; never once ended).
    start_phone_room: str = ""


def participant_kind(p: ParticipantInfo) -> str:
    """customer | agent | supervisor | rep | egress | other. A phone (kind SIP) is the customer: the
    caller of an inbound call, the callee of an outbound one."""
    if p.kind == ParticipantInfo.Kind.AGENT:
        return "agent"
    if p.kind == ParticipantInfo.Kind.EGRESS:
        return "egress"
    if p.kind == ParticipantInfo.Kind.SIP:
        return "customer"
    if p.identity.startswith(CUSTOMER_IDENTITY_PREFIX):
        return "customer"
    if p.identity.startswith(SUPERVISOR_IDENTITY_PREFIX):
        return "supervisor"
    if p.identity.startswith(REP_IDENTITY_PREFIX):
        return "rep"
    return "other"


def egress_update(signal_id: str, info: EgressInfo) -> EgressUpdate:
    """The workflow's view of an EgressInfo, as the signal a webhook becomes."""
    state = egress_state(info)  # one mapping for webhooks and for the activity that polls
    return EgressUpdate(
        id=signal_id, egress_id=state.egress_id, status=state.status, error=state.error,
        file=state.file, started_at=state.started_at,
    )  # fmt: skip


def signal_id(event: WebhookEvent, body: bytes) -> str:
    return f"lk-{event.id}" if event.id else f"lk-body-{hashlib.sha256(body).hexdigest()[:32]}"


def _at(event: WebhookEvent) -> str:
    ts = event.created_at or 0
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else ""


def route(event: WebhookEvent, body: bytes) -> tuple[str | None, Routed | None]:
    """Return (room name, routed signal); routed is None for events calls do not act on or
    rooms that are not calls."""
    sid = signal_id(event, body)
    kind = event.event
    if kind in ("participant_joined", "participant_left"):
        room = event.room.name
        call_id = call_id_from_room(room)
        if call_id is None:
            return room, None
        p = event.participant
        if kind == "participant_joined":
            arg: Any = ParticipantJoined(
                id=sid, identity=p.identity, kind=participant_kind(p), at=_at(event)
            )
            starts = room if is_phone_room(room) else ""
            return room, Routed(call_id, SIGNAL_PARTICIPANT_JOINED, arg, starts)
        arg = ParticipantLeft(id=sid, identity=p.identity, kind=participant_kind(p), at=_at(event))
        return room, Routed(call_id, SIGNAL_PARTICIPANT_LEFT, arg)
    if kind in ("egress_started", "egress_updated", "egress_ended"):
        room = event.egress_info.room_name
        call_id = call_id_from_room(room)
        if call_id is None:
            return room, None
        name = SIGNAL_EGRESS_ENDED if kind == "egress_ended" else SIGNAL_EGRESS_UPDATED
        return room, Routed(call_id, name, egress_update(sid, event.egress_info))
    if kind == "room_finished":
        room = event.room.name
        call_id = call_id_from_room(room)
        if call_id is None:
            return room, None
        return room, Routed(call_id, SIGNAL_ROOM_FINISHED, RoomFinished(id=sid, at=_at(event)))
    return event.room.name or None, None
