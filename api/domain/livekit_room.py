"""The API acting on a call's LiveKit room: the supervisor tokens it mints (grants) and the
commands it sends the agent in the room (whisper, takeover, release).

A supervisor token is for one room only and lives 15 minutes (a leaked one is soon worthless;
the dashboard asks for a new one to listen again). `monitor` is hidden and subscribe-only;
`barge` is visible and may publish its microphone only. Neither may publish data, so neither
can call the agent's RPCs or forge its topics: a whisper goes through the audited API.
Identities start with `supervisor-` so the webhook mapping classifies them.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from livekit import api as lkapi
from livekit.protocol.models import DataPacket, ParticipantInfo

from core.livekit import SUPERVISOR_IDENTITY_PREFIX
from core.settings import Settings

WHISPER_TOPIC = "supervisor.whisper"
SUPERVISOR_TOKEN_TTL = timedelta(minutes=15)


def supervisor_token(
    settings: Settings, room_name: str, principal_id: str, *, can_publish: bool
) -> tuple[str, str, str]:
    """Return (jwt, identity, expires_at ISO) for a supervisor in `room_name`."""
    identity = f"{SUPERVISOR_IDENTITY_PREFIX}{principal_id}-{secrets.token_hex(3)}"
    token, expires_at = room_token(settings, room_name, identity, "Supervisor",
                                   can_publish=can_publish, ttl=SUPERVISOR_TOKEN_TTL)  # fmt: skip
    return token, identity, expires_at


def room_token(settings: Settings, room_name: str, identity: str, name: str, *,
               can_publish: bool, ttl: timedelta) -> tuple[str, str]:  # fmt: skip
    """(jwt, expires_at ISO) for a person in `room_name`: subscribes; publishes the microphone
    only, and visibly, when `can_publish`, else is hidden; never data or metadata."""
    expires = datetime.now(UTC) + ttl
    grants = lkapi.VideoGrants(
        room_join=True,
        room=room_name,
        can_subscribe=True,
        can_publish=can_publish,
        can_publish_sources=["microphone"] if can_publish else None,
        can_publish_data=False,
        can_update_own_metadata=False,
        hidden=not can_publish,
    )
    token = (
        lkapi.AccessToken(
            settings.LIVEKIT_API_KEY.get_secret_value(),
            settings.LIVEKIT_API_SECRET.get_secret_value(),
        )
        .with_identity(identity)
        .with_name(name)
        .with_kind("standard")
        .with_grants(grants)
        .with_ttl(ttl)
        .to_jwt()
    )
    return token, expires.isoformat()


async def agent_identities(lk: lkapi.LiveKitAPI, room_name: str) -> list[str]:
    """Identities of the agent participants in the room (LiveKit marks them kind AGENT)."""
    resp = await lk.room.list_participants(lkapi.ListParticipantsRequest(room=room_name))
    return [p.identity for p in resp.participants if p.kind == ParticipantInfo.Kind.AGENT]


async def send_whisper(
    lk: lkapi.LiveKitAPI,
    room_name: str,
    destinations: list[str],
    text: str,
    by: str,
    command_id: str = "",
) -> None:
    """Deliver `{"text", "by", "id"}` on topic `supervisor.whisper` to the agent only (not the
    customer); the agent applies an id once."""
    await send_command(lk, room_name, destinations, WHISPER_TOPIC,
                       {"text": text, "by": by, "id": command_id})  # fmt: skip


async def send_command(
    lk: lkapi.LiveKitAPI, room_name: str, destinations: list[str], topic: str, payload: dict
) -> None:
    """A supervisor command (`supervisor.<action>`) from the server to the agent only."""
    body = {k: v for k, v in payload.items() if v}
    await lk.room.send_data(
        lkapi.SendDataRequest(
            room=room_name,
            data=json.dumps(body).encode(),
            kind=DataPacket.Kind.RELIABLE,
            destination_identities=destinations,
            topic=topic,
        )
    )
