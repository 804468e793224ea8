"""LiveKit and S3 as the services see them: one home for the client builders, the server-API
URL, the egress mapping, the agent's room-admin token and the participant identity prefixes.

Light on import (the workflow sandbox imports `activities`, which imports this): the LiveKit
and MinIO packages are imported inside the functions that need them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from core import models as m
from core.models import CUSTOMER_IDENTITY_PREFIX

if TYPE_CHECKING:
    from livekit.api import LiveKitAPI
    from livekit.protocol.egress import EgressInfo
    from minio import Minio

    from core.settings import Settings

# Identities say who a participant is: the webhook mapping and the agent classify by them.
# The customer's is defined next to `core.models.customer_identity` (the workflow names it).
SUPERVISOR_IDENTITY_PREFIX = "supervisor-"
AGENT_IDENTITY_PREFIX = "agent-"
REP_IDENTITY_PREFIX = "rep-"  # a rep who took the call from the desk (api/domain/desk.py)

__all__ = [
    "AGENT_IDENTITY_PREFIX",
    "CUSTOMER_IDENTITY_PREFIX",
    "REP_IDENTITY_PREFIX",
    "SUPERVISOR_IDENTITY_PREFIX",
    "egress_state",
    "livekit_client",
    "livekit_http_url",
    "minio_client",
    "room_admin_token",
]


def livekit_http_url(url: str) -> str:
    """The server API speaks HTTP; LIVEKIT_URL may be the ws(s):// URL clients use."""
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    return url


def livekit_client(settings: Settings) -> LiveKitAPI:
    """A LiveKit server API client (call inside a running event loop; `aclose()` it)."""
    from livekit.api import LiveKitAPI

    return LiveKitAPI(
        livekit_http_url(settings.LIVEKIT_URL),
        settings.LIVEKIT_API_KEY.get_secret_value(),
        settings.LIVEKIT_API_SECRET.get_secret_value(),
    )


def minio_client(
    settings: Settings, endpoint: str | None = None, secure: bool | None = None
) -> Minio:
    """The S3 client for `MINIO_*` settings (`endpoint`/`secure` override the host, e.g. the
    public one presigned links are signed for)."""
    from minio import Minio

    return Minio(
        endpoint or settings.MINIO_ENDPOINT,
        access_key=settings.MINIO_ACCESS_KEY.get_secret_value(),
        secret_key=settings.MINIO_SECRET_KEY.get_secret_value(),
        secure=settings.MINIO_SECURE if secure is None else secure,
        # A fixed region keeps presigning offline (no GetBucketLocation round trip).
        region=settings.MINIO_REGION,
    )


def _ns_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat() if ns else ""


def egress_state(info: EgressInfo) -> m.EgressState:
    """The workflow's view of an EgressInfo (status name, error, the first file's report):
    one mapping for the webhooks and for the activity that polls."""
    from livekit.protocol.egress import EgressStatus

    files = list(info.file_results) or ([info.file] if info.HasField("file") else [])
    file = None
    if files and (files[0].location or files[0].filename):
        f = files[0]
        file = m.RecordingFile(
            filename=f.filename, location=f.location, size=int(f.size), duration_s=f.duration / 1e9
        )
    return m.EgressState(
        egress_id=info.egress_id,
        status=EgressStatus.Name(info.status),
        error=info.error,
        file=file,
        started_at=_ns_iso(info.started_at),
    )


def room_admin_token(
    api_key: str, api_secret: str, *, room: str, identity: str, ttl_s: float = 900
) -> Callable[[], str]:
    """A source of LiveKit JWTs granting `roomAdmin` on `room`, minted anew before they expire.
    The API accepts these on its internal endpoints for that room's call."""
    from livekit import api as lkapi

    cached: tuple[str, float] | None = None

    def token() -> str:
        nonlocal cached
        now = time.monotonic()
        if cached is None or now > cached[1]:
            jwt = (
                lkapi.AccessToken(api_key, api_secret)
                .with_identity(identity)
                .with_grants(lkapi.VideoGrants(room_admin=True, room=room))
                .with_ttl(timedelta(seconds=ttl_s))
                .to_jwt()
            )
            cached = (jwt, now + ttl_s * 0.75)
        return cached[0]

    return token
