"""Who may use the codec endpoint (`/codec/*`) from the Temporal Web UI, three ways:

- `Authorization: Bearer <API token>` of a supervisor or admin (scripts, the CLI's
  `--codec-auth`);
- the `cc_session` cookie of a dashboard sign-in (`api/sessions.py`): a person signed in at the
  identity provider, or an API token's holder who asked for one (`POST /api/session/codec`). The
  UI sends it when its codec setting `includeCredentials` is on (ui-server config
  `codec.includeCredentials`; devstack turns it on, see devstack/ui_proxy.py). The session lives
  in PostgreSQL: signing out revokes it, and the cookie is refused from then on;
- in production, `Authorization: Bearer <OIDC access token>` that the UI passes when
  `codec.passAccessToken` is on (the UI only does so for an https endpoint): verified against
  the issuer's keys (`api/oidc.py`); its `aud` must name `CODEC_OIDC_AUDIENCE` (a token the
  issuer signed for another application is refused), and `CODEC_OIDC_ROLES_CLAIM` must list
  supervisor or admin.
"""

from __future__ import annotations

import asyncio
import hashlib

from sanic import Request

from api.auth import CODEC, Principal, bearer_from_header, invalid_token, signed_in
from api.errors import Forbidden
from api.oidc import Issuer, TokenRefused
from core.log import get_logger

log = get_logger("api.codec_auth")


def verify_access_token(issuer: Issuer, audience: str, token: str) -> Principal:
    """The UI's access token as a principal. Blocking (may fetch keys): call it off the loop."""
    try:
        claims = issuer.verify(token, audience=audience)
    except TokenRefused as exc:
        raise invalid_token(f"the access token is not valid: {exc}") from None
    roles = issuer.person(claims).roles
    if not roles:
        raise Forbidden(f"the access token's {issuer.roles_claim} name no role of this product")
    sub = hashlib.sha256(str(claims["sub"]).encode()).hexdigest()[:10]
    return Principal(role=roles[0], id=f"oidc-{sub}", roles=frozenset(roles), via="oidc")


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


async def authenticate_codec(request: Request) -> Principal:
    """The caller of `/codec/*` (see the module docstring); 401 / 403 as `api.auth` answers."""
    ctx = request.app.ctx
    bearer = bearer_from_header(request)
    principal: Principal | None = None
    if bearer:
        principal = ctx.tokens.lookup(bearer)
        issuer: Issuer | None = ctx.oidc_issuer
        audience = ctx.settings.CODEC_OIDC_AUDIENCE
        if principal is None and issuer is not None and audience and _looks_like_jwt(bearer):
            principal = await asyncio.to_thread(verify_access_token, issuer, audience, bearer)
        if principal is None:
            raise invalid_token()
    else:
        principal = await signed_in(request, realm="codec")
    if not principal.may(CODEC):
        raise Forbidden(f"role {principal.role} may not decode payloads; needs supervisor or admin")
    request.ctx.principal = principal
    return principal
