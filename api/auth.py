"""Bearer-token authentication for supervisors, ops and admins.

Tokens and their roles come from `settings.api_token_entries`. A presented token is compared
with every configured token in constant time, so neither timing nor an early exit tells which
prefix matched. A request is identified by a `Principal`: its role and a stable, non-secret id
that goes into audit records instead of the token: the entry's name (`name:token:role`), or
`<role>-<sha256(token)[:10]>` for an entry without one.

Browsers cannot set headers on a WebSocket, so WebSockets may also present the token as the
subprotocol pair `bearer, <token>` (the server answers with the subprotocol `bearer`). A token
in the URL (`?token=`) is refused: proxies and access logs keep URLs.

Without a bearer token, the `cc_session` cookie of a dashboard sign-in (`api/sessions.py`)
identifies the person: the session's email or subject is the principal's id, its roles those
the identity provider's roles claim listed. A cookie rides along with any request the browser
makes, so a cookie-authenticated request that changes something (any method but GET, HEAD,
OPTIONS) or opens a WebSocket must come from a page of this API's own origin (`Origin` names
this host): another site, or another port of this host, cannot act with it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from sanic import Request

from api import sessions
from api.errors import Forbidden, Unauthorized
from core.settings import DESK_ROLES, ROLES, ApiToken

# Who may do what. Supervisors watch and act on live calls; ops own the recording pipeline;
# admins may do everything, including erasure.
READ_CALLS = frozenset({"supervisor", "ops", "admin"})
ACT_ON_CALLS = frozenset({"supervisor", "admin"})
RECORDINGS_READ = frozenset({"supervisor", "ops", "admin"})
RECORDINGS_RETRY = frozenset({"ops", "admin"})
ERASE = frozenset({"admin"})
CODEC = frozenset({"supervisor", "admin"})
ANY_ROLE = frozenset(ROLES)
# The desk: reps take calls (supervisors and admins can act as reps); supervisors watch it.
DESK = frozenset(DESK_ROLES)
DESK_WATCH = frozenset({"rep", "supervisor", "admin"})
# Encoding seals input that workers trust under the production key (api/routes/codec.py).
CODEC_ENCODE = frozenset({"admin"})

WS_SUBPROTOCOL = "bearer"


@dataclass(frozen=True)
class Principal:
    """Who is calling: `id` is what the audit names (a token's name, a person's email or
    subject); `role` the most powerful of `roles` (a person may hold several)."""

    role: str
    id: str
    roles: frozenset[str] = frozenset()
    via: str = "token"  # or "session": the cc_session cookie of a sign-in
    expires_at: datetime | None = None
    skills: tuple[str, ...] = ()  # what they may take calls for at the desk

    def may(self, allowed: Iterable[str]) -> bool:
        return bool((self.roles or {self.role}) & frozenset(allowed))


class TokenTable:
    """The configured tokens, kept as SHA-256 digests so comparisons are fixed-length."""

    def __init__(self, tokens: Iterable[ApiToken] | dict[str, str]) -> None:
        entries = (
            [ApiToken(None, t, role) for t, role in tokens.items()]
            if isinstance(tokens, dict)
            else list(tokens)
        )
        self._entries = [
            (
                hashlib.sha256(e.token.encode()).digest(),
                e.role,
                e.name or f"{e.role}-{_fingerprint(e.token)}",
                e.skills,
            )
            for e in entries
        ]

    def lookup(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Principal | None = None
        for known, role, pid, skills in self._entries:
            # No early exit: every entry is compared whatever matched before.
            if hmac.compare_digest(digest, known):
                found = Principal(role=role, id=pid, skills=skills)
        return found


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:10]


def bearer_from_header(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_from_websocket(request: Request) -> str | None:
    """Header first, then the subprotocol pair `bearer, <token>`; never the URL."""
    if "token" in request.args:
        raise Unauthorized(
            "a token in the URL is not accepted (URLs are logged): send the subprotocol pair "
            "`bearer, <token>` or an Authorization header",
            code="token_in_url",
            field="token",
        )
    token = bearer_from_header(request)
    if token:
        return token
    offered = [p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",")]
    if len(offered) >= 2 and offered[0] == WS_SUBPROTOCOL and offered[1]:
        return offered[1]
    return None


def invalid_token(message: str = "the bearer token is not valid") -> Unauthorized:
    """The 401 for a token that was presented and refused (RFC 6750's `invalid_token`)."""
    return Unauthorized(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def authenticate(
    request: Request, roles: Iterable[str], *, websocket: bool = False
) -> Principal:
    """Return the caller's principal (bearer token, else session cookie); 401 without a valid
    one, 403 for a role not in `roles` or a cookie sent from another origin."""
    token = token_from_websocket(request) if websocket else bearer_from_header(request)
    principal: Principal | None
    if token:
        principal = request.app.ctx.tokens.lookup(token)
        if principal is None:
            raise invalid_token()
    else:
        principal = await signed_in(request, realm="api")
        if websocket or request.method not in ("GET", "HEAD", "OPTIONS"):
            require_same_origin(request)
    allowed = frozenset(roles)
    if not principal.may(allowed):
        raise Forbidden(
            f"role {principal.role} may not do this; needs one of {', '.join(sorted(allowed))}"
        )
    request.ctx.principal = principal
    return principal


async def session_principal(request: Request) -> Principal | None:
    """The principal of the request's `cc_session` cookie, or None (no cookie, or a session
    that is unknown, expired or revoked)."""
    session_id = request.cookies.get(sessions.COOKIE)
    if not session_id:
        return None
    found = await sessions.lookup(request.app.ctx.res.db, session_id)
    if found is None:
        return None
    return Principal(
        role=found.roles[0],
        id=found.person,
        roles=frozenset(found.roles),
        via="session",
        expires_at=found.expires_at,
        # A signed-in person who may take calls takes the default skill (no skills claim yet).
        skills=("general",) if set(found.roles) & DESK else (),
    )


async def signed_in(request: Request, *, realm: str) -> Principal:
    """The session cookie's principal; 401 (naming both ways in) without a live session."""
    principal = await session_principal(request)
    if principal is None:
        raise Unauthorized(
            "sign in (a session cookie) or send a bearer token",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
        )
    return principal


def require_same_origin(request: Request) -> None:
    """403 unless `Origin` names this API's own host (what a browser sends from our pages)."""
    origin = request.headers.get("origin", "")
    host = request.headers.get("x-forwarded-host") or request.host
    if not origin or urlsplit(origin).netloc.lower() != host.split(",")[0].strip().lower():
        raise Forbidden(
            "a session cookie is accepted only from this site's own pages (Origin)",
            code="cross_origin",
            field="Origin",
        )


Handler = Callable[..., Awaitable[Any]]


def require(roles: Iterable[str]) -> Callable[[Handler], Handler]:
    """Decorator for HTTP handlers: authenticate before the handler runs (see `authenticate`)."""
    allowed = frozenset(roles)

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            await authenticate(request, allowed)
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorate
