"""Who may use the codec endpoint (`/codec/*`) from the Temporal Web UI, three ways:

- `Authorization: Bearer <API token>` of a supervisor or admin (scripts, the CLI's
  `--codec-auth`);
- the `cc_codec` cookie that a dashboard sign-in sets (`POST /api/session/codec`): the UI sends
  it when its codec setting `includeCredentials` is on (ui-server config `codec.includeCredentials`;
  devstack turns it on, see devstack/ui_proxy.py). HttpOnly, SameSite=Lax, path `/codec`, signed
  with a key derived from `API_TOKENS` (rotating the tokens ends every session), never the token;
- in production, `Authorization: Bearer <OIDC access token>` that the UI passes when
  `codec.passAccessToken` is on (the UI only does so for an https endpoint): verified here against
  the issuer's JWKS (`CODEC_OIDC_ISSUER`, `CODEC_OIDC_AUDIENCE`, `CODEC_OIDC_JWKS_URL`), and its
  `CODEC_OIDC_ROLES_CLAIM` must list supervisor or admin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from sanic import Request

from api.auth import CODEC, Principal, bearer_from_header, invalid_token
from api.errors import Forbidden, Unauthorized
from core.log import get_logger
from core.settings import Settings

log = get_logger("api.codec_auth")
COOKIE = "cc_codec"
COOKIE_PATH = "/codec"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CodecSessions:
    """Signs and checks the `cc_codec` cookie: `<payload>.<hmac>`, payload `{sub, role, exp}`."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.API_TOKENS.get_secret_value().encode()
        self._key = hashlib.sha256(b"callcenter codec session\0" + secret).digest()
        self.ttl_s = settings.CODEC_SESSION_TTL_S

    def issue(self, principal: Principal, now: float | None = None) -> str:
        exp = int((now or time.time()) + self.ttl_s)
        body = _b64(json.dumps({"sub": principal.id, "role": principal.role, "exp": exp}).encode())
        return f"{body}.{_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())}"

    def check(self, value: str, now: float | None = None) -> Principal | None:
        body, _, mac = value.partition(".")
        want = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, want):
            return None
        try:
            claims = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < (now or time.time()):
            return None
        return Principal(role=str(claims.get("role")), id=str(claims.get("sub")))


class OidcVerifier:
    """Checks an OIDC access token (signature from the issuer's JWKS, iss, aud, exp, roles)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.CODEC_OIDC_ISSUER
        self.issuer = settings.CODEC_OIDC_ISSUER
        self.audience = settings.CODEC_OIDC_AUDIENCE
        url = settings.CODEC_OIDC_JWKS_URL or self.issuer.rstrip("/") + "/.well-known/jwks.json"
        self.jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)
        self.roles_claim = settings.CODEC_OIDC_ROLES_CLAIM

    def verify(self, token: str) -> Principal:
        """Blocking (may fetch the JWKS): call it off the event loop."""
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(self.audience)},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise invalid_token(f"the access token is not valid: {type(exc).__name__}") from None
        roles = claims.get(self.roles_claim) or []
        roles = [roles] if isinstance(roles, str) else list(roles)
        role = next((r for r in ("admin", "supervisor") if r in roles), None)
        sub = hashlib.sha256(str(claims["sub"]).encode()).hexdigest()[:10]
        if role is None:
            raise Forbidden(
                f"the access token's {self.roles_claim} name neither supervisor nor admin"
            )
        return Principal(role=role, id=f"oidc-{sub}")


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


async def authenticate_codec(request: Request) -> Principal:
    """The caller of `/codec/*` (see the module docstring); 401 / 403 as `api.auth` answers."""
    ctx = request.app.ctx
    bearer = bearer_from_header(request)
    principal: Principal | None = None
    if bearer:
        principal = ctx.tokens.lookup(bearer)
        verifier: OidcVerifier | None = getattr(ctx, "codec_oidc", None)
        if principal is None and verifier is not None and _looks_like_jwt(bearer):
            principal = await asyncio.to_thread(verifier.verify, bearer)
        if principal is None:
            raise invalid_token()
    else:
        cookie = request.cookies.get(COOKIE)
        if cookie:
            principal = ctx.codec_sessions.check(cookie)
        if principal is None:
            raise Unauthorized(
                "sign in to the dashboard (a codec cookie) or send a bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="codec"'},
            )
    if principal.role not in CODEC:
        raise Forbidden(f"role {principal.role} may not decode payloads; needs supervisor or admin")
    request.ctx.principal = principal
    return principal
