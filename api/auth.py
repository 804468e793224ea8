"""Bearer-token authentication for supervisors, ops and admins.

Tokens and their roles come from `settings.api_token_entries`. A presented token is compared
with every configured token in constant time, so neither timing nor an early exit tells which
prefix matched. A request is identified by a `Principal`: its role and a stable, non-secret id
that goes into audit records instead of the token: the entry's name (`name:token:role`), or
`<role>-<sha256(token)[:10]>` for an entry without one.

Browsers cannot set headers on a WebSocket, so WebSockets may also present the token as the
subprotocol pair `bearer, <token>` (the server answers with the subprotocol `bearer`). A token
in the URL (`?token=`) is refused: proxies and access logs keep URLs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from sanic import Request

from api.errors import Forbidden, Unauthorized
from core.settings import ApiToken

# Who may do what. Supervisors watch and act on live calls; ops own the recording pipeline;
# admins may do everything, including erasure.
READ_CALLS = frozenset({"supervisor", "ops", "admin"})
ACT_ON_CALLS = frozenset({"supervisor", "admin"})
RECORDINGS_READ = frozenset({"supervisor", "ops", "admin"})
RECORDINGS_RETRY = frozenset({"ops", "admin"})
ERASE = frozenset({"admin"})
CODEC = frozenset({"supervisor", "admin"})
# Encoding seals input that workers trust under the production key (api/routes/codec.py).
CODEC_ENCODE = frozenset({"admin"})

WS_SUBPROTOCOL = "bearer"


@dataclass(frozen=True)
class Principal:
    role: str
    id: str


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
            )
            for e in entries
        ]

    def lookup(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Principal | None = None
        for known, role, pid in self._entries:
            # No early exit: every entry is compared whatever matched before.
            if hmac.compare_digest(digest, known):
                found = Principal(role=role, id=pid)
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


def authenticate(request: Request, roles: Iterable[str], *, websocket: bool = False) -> Principal:
    """Return the caller's principal; 401 without a valid token, 403 for a role not in `roles`."""
    token = token_from_websocket(request) if websocket else bearer_from_header(request)
    if not token:
        raise Unauthorized(
            "a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    principal: Principal | None = request.app.ctx.tokens.lookup(token)
    if principal is None:
        raise invalid_token()
    allowed = frozenset(roles)
    if principal.role not in allowed:
        raise Forbidden(
            f"role {principal.role} may not do this; needs one of {', '.join(sorted(allowed))}"
        )
    request.ctx.principal = principal
    return principal


Handler = Callable[..., Awaitable[Any]]


def require(roles: Iterable[str]) -> Callable[[Handler], Handler]:
    """Decorator for HTTP handlers: authenticate before the handler runs (see `authenticate`)."""
    allowed = frozenset(roles)

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            authenticate(request, allowed)
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorate
