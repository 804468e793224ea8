"""A small OpenID Connect provider that tests run themselves: a real HTTP server that the API
talks to as it would to the organisation's (Keycloak, Entra ID, Okta, Google).

It serves what an OIDC relying party uses, as OIDC Core 1.0, OIDC Discovery 1.0, RFC 6749 and
RFC 7636 describe it:

- `/.well-known/openid-configuration` (discovery) and `/.well-known/jwks.json` (its RSA key);
- `GET /authorize`: the authorization code flow. There is no login form: the provider signs in
  `provider.user` at once (tests set who). It refuses an unknown client or redirect URI with a
  400 page (never redirecting to an unchecked URI), requires PKCE with S256, and redirects back
  with `code` and `state`, or with `error=access_denied` when `provider.deny` is set;
- `POST /token`: redeems a code once, for the client it was issued to, with the same
  redirect URI, when `BASE64URL(SHA256(code_verifier))` is the challenge; otherwise
  `400 {"error": "invalid_grant"}`. The ID token is RS256-signed with `iss`, `sub`, `aud` (the
  client id, or `provider.id_token_audience` to test a relying party's check), `exp`, `iat`,
  `nonce`, `email`, `name` and the roles claim.

`access_token(...)` signs a token for other audiences (the Temporal Web UI's, on /codec).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.services import free_port

CODE_TTL_S = 60


@dataclass
class User:
    sub: str = "u-1001"
    email: str | None = "alice@example.com"
    name: str | None = "Alice Supervisor"
    roles: list[str] = field(default_factory=lambda: ["supervisor"])


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    user: User
    expires: float


class OidcProvider:
    """`async with OidcProvider(client_id=...) as idp:` serves at `idp.issuer` until the end."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
        roles_claim: str = "roles",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = redirect_uris  # None: any http(s) URI (the tests' API picks a port)
        self.roles_claim = roles_claim
        self.user = User()
        self.deny = False
        self.id_token_audience: str | list[str] | None = None
        self.token_errors: list[str] = []  # every refused /token request's error, in order
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._grants: dict[str, _Grant] = {}
        self._runner: web.AppRunner | None = None
        self.issuer = ""

    async def __aenter__(self) -> OidcProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/.well-known/jwks.json", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.issuer = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- tokens --------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "test-key"})

    def access_token(self, *, aud: str | None, user: User | None = None, **extra: Any) -> str:
        """An access token for `aud` (None: no `aud` at all) as the issuer would sign it."""
        who = user or self.user
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": who.sub, "iat": now,
                                  "exp": now + 300, self.roles_claim: who.roles}  # fmt: skip
        if aud is not None:
            claims["aud"] = aud
        return self.sign(claims | extra)

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.user.sub,
            "aud": self.id_token_audience or grant.client_id,
            "iat": now,
            "exp": now + 300,
            self.roles_claim: grant.user.roles,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if grant.user.email:
            claims["email"] = grant.user.email
        if grant.user.name:
            claims["name"] = grant.user.name
        return self.sign(claims)

    # --- endpoints -----------------------------------------------------------------------------

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile"],
        })  # fmt: skip

    async def _jwks(self, _: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return web.json_response(
            {"keys": [jwk | {"kid": "test-key", "use": "sig", "alg": "RS256"}]}
        )

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id:
            return web.Response(status=400, text="unknown client_id")
        if not redirect_uri.startswith(("http://", "https://")) or (
            self.redirect_uris is not None and redirect_uri not in self.redirect_uris
        ):
            return web.Response(status=400, text="redirect_uri is not registered")

        def back(**params: str) -> web.Response:
            if q.get("state"):
                params["state"] = q["state"]
            raise web.HTTPFound(f"{redirect_uri}?{urlencode(params)}")

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in q.get("scope", "").split():
            return back(error="invalid_scope")
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return back(error="invalid_request", error_description="PKCE S256 is required")
        if self.deny:
            return back(error="access_denied")
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(self.client_id, redirect_uri, q["code_challenge"],
                                    q.get("nonce"), self.user, time.time() + CODE_TTL_S)  # fmt: skip
        return back(code=code)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()

        def refuse(error: str, status: int = 400) -> web.Response:
            self.token_errors.append(error)
            return web.json_response({"error": error}, status=status,
                                     headers={"Cache-Control": "no-store"})  # fmt: skip

        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        if self.client_secret is not None and not self._client_authenticated(request):
            return refuse("invalid_client", 401)
        grant = self._grants.pop(str(form.get("code", "")), None)  # one use, even when refused
        if grant is None or grant.expires < time.time():
            return refuse("invalid_grant")
        if form.get("client_id", grant.client_id) != grant.client_id:
            return refuse("invalid_grant")
        if form.get("redirect_uri") != grant.redirect_uri:
            return refuse("invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        if not 43 <= len(verifier) <= 128 or _s256(verifier) != grant.challenge:
            return refuse("invalid_grant")
        return web.json_response(
            {
                "access_token": self.access_token(aud=grant.client_id, user=grant.user),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self._id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _client_authenticated(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user == self.client_id and secrets.compare_digest(password, self.client_secret or "")


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
