"""The organisation's OpenID Connect identity provider, as this API relies on it.

One issuer (`CODEC_OIDC_ISSUER`) serves two audiences:

- the Temporal Web UI's access tokens on `/codec` (`aud` must name `CODEC_OIDC_AUDIENCE`);
- the dashboard's sign-in: OIDC Core's authorization code flow with PKCE (RFC 7636, S256). The
  ID token from the token endpoint is checked as OIDC Core 3.1.3.7 asks: the issuer's signature
  (JWKS), `iss` exactly, `aud` naming our client id (with more than one audience, `azp` must be
  ours), `exp`, `iat`, and the `nonce` this sign-in sent.

Roles come from one claim in both (`CODEC_OIDC_ROLES_CLAIM`, a list or a string), kept to the
roles this product knows. Keys come from the discovery document's `jwks_uri` (or
`CODEC_OIDC_JWKS_URL`), fetched once and refreshed when a token names an unknown key.
Everything here that fetches is blocking and runs off the event loop, except the token request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt

from core.settings import ROLES, Settings

# Asymmetric algorithms only: a symmetric one would let the public key act as a shared secret.
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
ROLE_ORDER = ("admin", "supervisor", "ops", *(r for r in ROLES if r not in ("admin", "supervisor", "ops")))  # fmt: skip


class TokenRefused(Exception):
    """A token or a code the provider or this API would not accept; the message names why,
    never the token's content."""


class ProviderUnavailable(TokenRefused):
    """The provider could not be reached (or answered garbage): an outage, not a refusal."""


@dataclass(frozen=True)
class Person:
    """Who signed in: the provider's subject, email and name if it told, and the known roles."""

    subject: str
    email: str | None
    name: str | None
    roles: tuple[str, ...]

    @property
    def audit_name(self) -> str:
        """What the audit says acted: the email when the provider gave one, else the subject."""
        return self.email or self.subject


def known_roles(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """The roles `claim` lists that this product knows, most powerful first."""
    raw = claims.get(claim) or []
    listed = {raw} if isinstance(raw, str) else {str(r) for r in raw if isinstance(r, str)}
    return tuple(r for r in ROLE_ORDER if r in listed)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge): 43 characters of the unreserved set; S256 of it."""
    verifier = secrets.token_urlsafe(48)[:64]
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Issuer:
    """Discovery, keys and token checks for `CODEC_OIDC_ISSUER`."""

    def __init__(self, settings: Settings) -> None:
        assert settings.CODEC_OIDC_ISSUER
        self.issuer = settings.CODEC_OIDC_ISSUER
        self.roles_claim = settings.CODEC_OIDC_ROLES_CLAIM
        self._jwks_url = settings.CODEC_OIDC_JWKS_URL
        self._jwks: jwt.PyJWKClient | None = None
        self._discovery: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        """The provider's `/.well-known/openid-configuration` (blocking; kept once fetched)."""
        with self._lock:
            if self._discovery is None:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (https in prod)
                        doc = json.loads(resp.read())
                except (OSError, ValueError) as exc:
                    raise ProviderUnavailable(
                        f"the identity provider's discovery document is not available "
                        f"({type(exc).__name__})"
                    ) from None
                if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
                    # OIDC Discovery 4.3: the document's issuer must be the one we asked.
                    raise TokenRefused("the discovery document names another issuer")
                self._discovery = doc
            return self._discovery

    def _keys(self) -> jwt.PyJWKClient:
        url = self._jwks_url or str(self.discovery().get("jwks_uri") or "")
        if not url:
            raise TokenRefused("the identity provider publishes no jwks_uri")
        with self._lock:
            if self._jwks is None:
                self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)
            return self._jwks

    def verify(self, token: str, *, audience: str, nonce: str | None = None) -> dict[str, Any]:
        """The token's claims, or `TokenRefused`. Blocking (may fetch keys). `aud` is always
        required and must name `audience`; an ID token (`nonce` given) also needs `iat`, the
        nonce, and with several audiences an `azp` naming `audience`."""
        required = ["exp", "iss", "sub", "aud"] + (["iat"] if nonce is not None else [])
        try:
            key = self._keys().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                audience=audience,
                options={"require": required, "verify_aud": True},
                leeway=30,
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise TokenRefused(f"the token is not valid: {type(exc).__name__}") from None
        if nonce is not None:
            if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
                raise TokenRefused("the ID token's nonce is not this sign-in's")
            aud = claims["aud"]
            if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != audience:
                raise TokenRefused("the ID token names several audiences but not us as azp")
        return claims

    def person(self, claims: dict[str, Any]) -> Person:
        email = claims.get("email")
        name = claims.get("name")
        return Person(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            name=name if isinstance(name, str) and name else None,
            roles=known_roles(claims, self.roles_claim),
        )


class SignInClient:
    """The dashboard as an OIDC client of `Issuer` (authorization code + PKCE)."""

    def __init__(self, settings: Settings, issuer: Issuer) -> None:
        assert settings.DASHBOARD_OIDC_CLIENT_ID
        self.issuer = issuer
        self.client_id = settings.DASHBOARD_OIDC_CLIENT_ID
        secret = settings.DASHBOARD_OIDC_CLIENT_SECRET
        self._secret = secret.get_secret_value() if secret else None
        self.redirect_url = settings.DASHBOARD_OIDC_REDIRECT_URL

    def authorize_url(
        self,
        discovery: dict[str, Any],
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        challenge: str,
    ) -> str:
        endpoint = str(discovery.get("authorization_endpoint") or "")
        if not endpoint:
            raise TokenRefused("the identity provider publishes no authorization_endpoint")
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    async def redeem(
        self, discovery: dict[str, Any], *, code: str, verifier: str, redirect_uri: str
    ) -> str:
        """Exchange the code (with the PKCE verifier) for the ID token; `TokenRefused` if the
        provider says no (RFC 6749 5.2: `invalid_grant` for a wrong verifier or a used code)."""
        endpoint = str(discovery.get("token_endpoint") or "")
        if not endpoint:
            raise TokenRefused("the identity provider publishes no token_endpoint")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        auth = aiohttp.BasicAuth(self.client_id, self._secret) if self._secret else None
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(endpoint, data=form, auth=auth) as resp,
            ):
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(
                f"the identity provider's token endpoint failed ({type(exc).__name__})"
            ) from None
        if status != 200 or not isinstance(body, dict) or not body.get("id_token"):
            error = body.get("error") if isinstance(body, dict) else None
            raise TokenRefused(f"the identity provider refused the code ({str(error)[:40]})")
        return str(body["id_token"])
