"""Signing in to the dashboard and out again (server-side sessions, `api/sessions.py`).

- `GET /auth/login?return_to=/dashboard`: starts an OIDC sign-in at the organisation's identity
  provider (authorization code with PKCE S256, a fresh `state` and `nonce`). What the callback
  needs is stored in PostgreSQL under the state's hash, so any API instance can finish it; the
  browser keeps the state in the `cc_signin` cookie (path `/auth`, ten minutes), and a callback
  whose state is not this browser's is refused (login CSRF).
- `GET /auth/callback?code&state`: redeems the code with the verifier, checks the ID token
  (`api/oidc.py`: our client id as `aud`, the nonce), starts a session with the roles the roles
  claim lists, sets `cc_session` and goes back to `return_to` (a path on this site only).
- `GET /api/session`: who the caller is (either way of signing in). `DELETE /api/session`:
  signs out: the session is revoked in PostgreSQL (every instance, the codec included, refuses
  the cookie from then on) and the cookie is cleared.
- `POST /api/session/codec`: an API token's holder (supervisor, admin) asks for the cookie with
  which the Temporal Web UI may decode payloads: a session like any other, revoked on sign-out.
- `GET /api/session/sign-in`: whether the identity provider signs people in here.

Every refusal is the contract's JSON 4xx naming what was wrong; an unreachable provider is 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, redirect

from api import sessions
from api.auth import ANY_ROLE, CODEC, require
from api.docs import endpoint
from api.errors import ApiError, Forbidden, NotFound, Unauthorized, Unavailable, ValidationFailed
from api.oidc import Issuer, Person, ProviderUnavailable, SignInClient, TokenRefused, pkce_pair
from api.schemas import Empty, SessionInfo, SignInOptions, SignInQuery
from api.validation import parse_body, parse_query
from core.log import get_logger

bp = Blueprint("session")
log = get_logger("api.session")

SIGNIN_COOKIE = "cc_signin"
SIGNIN_COOKIE_PATH = "/auth"
SIGNIN_TTL_S = 600


def _client(request: Request) -> SignInClient:
    client: SignInClient | None = request.app.ctx.sign_in
    if client is None:
        raise NotFound(
            "sign-in with an identity provider is not configured (DASHBOARD_OIDC_CLIENT_ID)",
            code="sign_in_not_configured",
        )
    return client


async def _discovery(issuer: Issuer) -> dict[str, object]:
    try:
        return await asyncio.to_thread(issuer.discovery)
    except ProviderUnavailable as exc:
        raise Unavailable(str(exc), code="identity_provider_unavailable") from None
    except TokenRefused as exc:
        raise Unavailable(str(exc), code="identity_provider_misconfigured") from None


def _state_hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


@bp.get("/api/session/sign-in")
@endpoint("How people sign in here", tag="session", response=SignInOptions)
async def sign_in_options(request: Request) -> HTTPResponse:
    configured = request.app.ctx.sign_in is not None
    return json({"oidc": configured, "login_url": "/auth/login" if configured else None})


@bp.get("/auth/login")
@endpoint("Sign in at the organisation's identity provider (redirects there)", tag="session",
          ok=302, errors=(404, 422, 503))  # fmt: skip
async def login(request: Request) -> HTTPResponse:
    client = _client(request)
    query = parse_query(request, SignInQuery)
    discovery = await _discovery(client.issuer)
    redirect_uri = client.redirect_url or (
        f"{'https' if sessions.is_https(request) else 'http'}://{request.host}/auth/callback"
    )
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    pool = request.app.ctx.res.db
    await sessions.forget_expired(pool)
    await pool.execute(
        "INSERT INTO sign_ins (state_hash, code_verifier, nonce, return_to, redirect_uri, "
        "expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        _state_hash(state),
        verifier,
        nonce,
        query.return_to,
        redirect_uri,
        float(SIGNIN_TTL_S),
    )
    url = client.authorize_url(
        discovery, redirect_uri=redirect_uri, state=state, nonce=nonce, challenge=challenge
    )
    response = redirect(url, status=302)
    # The provider's redirect back is a top-level GET: SameSite=Lax sends the cookie with it.
    sessions.set_cookie(
        request, response, state, SIGNIN_TTL_S, name=SIGNIN_COOKIE, path=SIGNIN_COOKIE_PATH
    )
    return response


def _arg(request: Request, name: str) -> str:
    value = request.args.get(name)
    if not value or len(value) > 2048:
        raise ValidationFailed(f"{name}: is required (at most 2048 characters)", field=name)
    return str(value)


@bp.get("/auth/callback")
@endpoint("Finish a sign-in (the identity provider redirects here)", tag="session", ok=303,
          errors=(400, 401, 403, 404, 422, 503))  # fmt: skip
async def callback(request: Request) -> HTTPResponse:
    client = _client(request)
    if request.args.get("error"):
        # RFC 6749 4.1.2.1: the provider says why in `error` (a code, not free text).
        code = str(request.args.get("error"))[:40]
        raise Unauthorized(f"the identity provider refused the sign-in ({code})",
                           code="sign_in_refused", field="error")  # fmt: skip
    code, state = _arg(request, "code"), _arg(request, "state")
    mine = request.cookies.get(SIGNIN_COOKIE, "")
    if not mine or not secrets.compare_digest(mine, state):
        raise ApiError("state: is not the sign-in this browser started", code="state_mismatch",
                       field="state")  # fmt: skip
    pool = request.app.ctx.res.db
    row = await pool.fetchrow(
        "DELETE FROM sign_ins WHERE state_hash = $1 RETURNING code_verifier, nonce, return_to, "
        "redirect_uri, expires_at > now() AS live",
        _state_hash(state),
    )
    if row is None or not row["live"]:
        raise ApiError("state: this sign-in was finished or has expired; sign in again",
                       code="sign_in_expired", field="state")  # fmt: skip
    discovery = await _discovery(client.issuer)
    try:
        id_token = await client.redeem(
            discovery, code=code, verifier=row["code_verifier"], redirect_uri=row["redirect_uri"]
        )
        claims = await asyncio.to_thread(
            client.issuer.verify, id_token, audience=client.client_id, nonce=row["nonce"]
        )
    except ProviderUnavailable as exc:
        raise Unavailable(str(exc), code="identity_provider_unavailable") from None
    except TokenRefused as exc:
        raise Unauthorized(f"sign-in failed: {exc}", code="sign_in_failed", field="code") from None
    person = client.issuer.person(claims)
    if not person.roles:
        raise Forbidden(
            f"the identity provider's {client.issuer.roles_claim} claim names no role of this "
            "product (admin, supervisor, ops)",
            code="no_role",
        )
    ttl = request.app.ctx.settings.SESSION_TTL_S
    session_id, _ = await sessions.start(pool, person, via="oidc", ttl_s=ttl)
    log.info("signed_in", by=person.audit_name, roles=",".join(person.roles), via="oidc")
    response = redirect(row["return_to"], status=303)
    sessions.set_cookie(request, response, session_id, ttl)
    sessions.clear_cookie(request, response, name=SIGNIN_COOKIE, path=SIGNIN_COOKIE_PATH)
    return response


@bp.get("/api/session")
@endpoint("Who is signed in", tag="session", response=SessionInfo, secured=True)
@require(ANY_ROLE)
async def whoami(request: Request) -> HTTPResponse:
    principal = request.ctx.principal
    roles = sorted(principal.roles or {principal.role})
    expires = principal.expires_at.isoformat() if principal.expires_at else None
    return json({"person": principal.id, "roles": roles, "via": principal.via,
                 "expires_at": expires})  # fmt: skip


@bp.delete("/api/session")
@endpoint("Sign out: revoke the session (dashboard and codec) and clear its cookie",
          tag="session", ok=204)  # fmt: skip
async def sign_out(request: Request) -> HTTPResponse:
    session_id = request.cookies.get(sessions.COOKIE)
    if session_id and await sessions.revoke(request.app.ctx.res.db, session_id):
        log.info("signed_out")
    response = HTTPResponse(status=204)
    sessions.clear_cookie(request, response)
    return response


@bp.post("/api/session/codec")
@endpoint(
    "Set the cookie with which the Temporal Web UI may decode payloads (API-token sign-in)",
    tag="session",
    ok=204,
    secured=True,
)
@require(CODEC)
async def codec_session(request: Request) -> HTTPResponse:
    parse_body(request, Empty, allow_empty=True)
    principal = request.ctx.principal
    response = HTTPResponse(status=204)
    if principal.via == "session":
        return response  # signed in already: the session's cookie serves the codec too
    ttl = request.app.ctx.settings.SESSION_TTL_S
    person = Person(subject=principal.id, email=None, name=None, roles=(principal.role,))
    session_id, _ = await sessions.start(request.app.ctx.res.db, person, via="token", ttl_s=ttl)
    sessions.set_cookie(request, response, session_id, ttl)
    log.info("codec_session_started", by=principal.id)
    return response
