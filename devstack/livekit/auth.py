"""Access tokens as LiveKit checks them: HS256 JWTs whose issuer is the API key.

The server's auth middleware verifies a token when one is present; each Twirp method then
asks for the grant it needs (`roomCreate`, `roomList`, `roomAdmin` for that very room,
`roomRecord`; SIP methods `sip.admin` or `sip.call`). As in livekit-server, a missing token or a missing grant is answered with
Twirp `unauthenticated` "permissions denied" (livekit-server's `twirpAuthError`).
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from .twirp import TwirpError

# go-jose's default leeway, which livekit-server's token verification uses.
LEEWAY_S = 60
_ALGORITHMS = ["HS256", "HS384", "HS512"]


@dataclass
class Grants:
    """The claims of a verified token that authorisation looks at."""

    identity: str = ""
    video: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    sip: dict[str, Any] = field(default_factory=dict)

    def has(self, grant: str) -> bool:
        return bool(self.video.get(grant))


class TokenError(Exception):
    """The bearer token is malformed, expired, or signed with another key or secret."""


def verify_token(token: str, api_key: str, api_secret: str) -> Grants:
    """Verify signature, issuer, `exp` and `nbf` (with one minute of leeway) and return the grants.

    Raises TokenError with a message that never contains the token or the secret.
    """
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenError("invalid authorization token") from None
    if unverified.get("iss") != api_key:
        raise TokenError(f"invalid API key: {unverified.get('iss', '')}")
    try:
        claims = jwt.decode(
            token,
            key=api_secret,
            algorithms=_ALGORITHMS,
            issuer=api_key,
            leeway=LEEWAY_S,
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError as e:
        raise TokenError(f"invalid token: {type(e).__name__}: {e}") from None
    video = claims.get("video") or {}
    sip = claims.get("sip") or {}
    return Grants(
        identity=str(claims.get("sub", "")),
        video=video if isinstance(video, dict) else {},
        name=str(claims.get("name", "")),
        sip=sip if isinstance(sip, dict) else {},
    )


class JoinRefused(Exception):
    """A token that may not join (livekit-server's `ValidateConnectRequest`): `status` is the
    HTTP status it answers, the message its plain-text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def join_grants(token: str, api_key: str, api_secret: str, room: str = "") -> tuple[Grants, str]:
    """The grants of a join token and the room it joins, checked as livekit-server checks a
    connection (`/rtc` and `/rtc/validate`): a valid token (401), the `roomJoin` grant (401),
    an identity (400), a room from the token or else the request (400)."""
    try:
        grants = verify_token(token, api_key, api_secret)
    except TokenError as e:
        raise JoinRefused(401, str(e)) from None
    if not grants.has("roomJoin"):
        raise JoinRefused(401, _DENIED)
    if not grants.identity:
        raise JoinRefused(400, "participant identity cannot be empty")
    room = str(grants.video.get("room") or room)
    if not room:
        raise JoinRefused(400, "room name cannot be empty")
    return grants, room


def bearer_grants(header: str | None, api_key: str, api_secret: str) -> Grants | None:
    """The grants of an `Authorization: Bearer <jwt>` header, None when there is no header.

    Raises TokenError for a header that is not a valid bearer token.
    """
    if not header:
        return None
    if not header.startswith("Bearer "):
        raise TokenError("invalid authorization header. Must start with Bearer ")
    return verify_token(header[len("Bearer ") :], api_key, api_secret)


_DENIED = "permissions denied"


def require(grants: Grants | None, grant: str) -> None:
    """Raise Twirp `unauthenticated` unless the token carries `grant` (e.g. "roomCreate")."""
    if grants is None or not grants.has(grant):
        raise TwirpError("unauthenticated", _DENIED)


def require_admin(grants: Grants | None, room: str) -> None:
    """Raise Twirp `unauthenticated` unless the token is `roomAdmin` for exactly `room`."""
    if grants is None or not grants.has("roomAdmin") or grants.video.get("room", "") != room:
        raise TwirpError("unauthenticated", _DENIED)


def require_sip(grants: Grants | None, grant: str) -> None:
    """Raise Twirp `unauthenticated` unless the token's SIP grant has `grant` ("admin" or
    "call"); neither implies the other (pkg/service/auth.go EnsureSIP*Permission)."""
    if grants is None or not grants.sip.get(grant):
        raise TwirpError("unauthenticated", _DENIED)


def webhook_token(body: bytes, api_key: str, api_secret: str, ttl_s: int = 300) -> str:
    """The Authorization header value LiveKit puts on a webhook: a JWT (no "Bearer" prefix)
    whose `sha256` claim is the base64 SHA-256 of the exact body bytes."""
    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"iss": api_key, "nbf": now, "exp": now + ttl_s, "sha256": digest}
    return jwt.encode(claims, api_secret, algorithm="HS256")
