"""The customer's LiveKit join token: signed here, from the grant the call's workflow decided.

The workflow decides and records the grant (identity, expiry, a token id); the JWT itself is
made only here, so a join token is never a payload in Temporal history (where a supervisor's
codec access, or anyone who reaches Temporal without `PAYLOAD_KEYS`, would read it and could
join as the customer, LiveKit evicting the real one as a duplicate identity).

The token id travels as the JWT's `jti`. A rejoin presents the customer's earlier token as its
proof: `rejoin_proof` checks the signature, the issuer, the room and the identity, and hands
the token id and expiry to the workflow, which accepts only its latest token and, once that
has expired, only within the rejoin grace (`workflows.common.rejoin_refused`).
"""

from __future__ import annotations

import calendar
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime

import jwt
from livekit import api as lkapi

from api.errors import Forbidden
from core.models import TokenGrant, customer_identity, room_name_for
from core.settings import Settings


def customer_grants(room_name: str) -> lkapi.VideoGrants:
    """The customer speaks and listens, nothing more: no camera or screen share, no data
    packets (so no RPC to the agent and nothing forged on its topics)."""
    return lkapi.VideoGrants(
        room_join=True,
        room=room_name,
        can_publish=True,
        can_publish_sources=["microphone"],
        can_subscribe=True,
        can_publish_data=False,
        can_update_own_metadata=False,
    )


def sign_join_token(settings: Settings, grant: TokenGrant) -> TokenGrant:
    """`grant` with its JWT: for the grant's room and identity, `exp` its `expires_at`, `jti`
    its token id. A grant that already carries a token (a call started by a release that
    minted in the worker, still draining) is returned as it is."""
    if grant.token or not grant.token_id:
        return grant
    key = settings.LIVEKIT_API_KEY.get_secret_value()
    at = (
        lkapi.AccessToken(key, settings.LIVEKIT_API_SECRET.get_secret_value())
        .with_identity(grant.participant_identity)
        .with_name(grant.name)
        .with_grants(customer_grants(grant.room_name))
    )
    claims = at.claims.asdict()
    exp = calendar.timegm(datetime.fromisoformat(grant.expires_at).utctimetuple())
    claims.update(
        sub=grant.participant_identity, iss=key, nbf=int(time.time()), exp=exp, jti=grant.token_id
    )
    token = jwt.encode(claims, settings.LIVEKIT_API_SECRET.get_secret_value(), algorithm="HS256")
    url = grant.livekit_url or settings.livekit_public_url
    return dataclasses.replace(grant, token=token, livekit_url=url)


# The token id of a proof minted before join tokens carried one (a call of the previous release,
# still running on its own workers, which ignore it): no grant ever has this id, so the
# current release's calls refuse it, and the previous release's keep their old rule.
UNBOUND_PROOF = "unbound"


@dataclass(frozen=True)
class RejoinProof:
    token_id: str
    expires_at: float  # epoch seconds


def rejoin_proof(settings: Settings, token: str, call_id: str, oldest_s: float) -> RejoinProof:
    """The token id and expiry of `token` if it is a join token we signed for this call's
    customer (expired by at most `oldest_s`: no call's token is older than the longest call).
    403 naming the field `token` otherwise; the message never holds the token."""
    try:
        claims = jwt.decode(
            token,
            key=settings.LIVEKIT_API_SECRET.get_secret_value(),
            issuer=settings.LIVEKIT_API_KEY.get_secret_value(),
            algorithms=["HS256"],
            leeway=oldest_s,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise Forbidden("token: not a token of this call", field="token") from exc
    video = claims.get("video")
    room = video.get("room") if isinstance(video, dict) else None
    if claims["sub"] != customer_identity(call_id) or room != room_name_for(call_id):
        raise Forbidden("token: not a token of this call", field="token")
    token_id = claims.get("jti") or UNBOUND_PROOF
    if not isinstance(token_id, str) or not isinstance(claims["exp"], int | float):
        raise Forbidden("token: not a token of this call", field="token")
    return RejoinProof(token_id=token_id, expires_at=float(claims["exp"]))
