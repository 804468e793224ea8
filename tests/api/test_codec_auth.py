"""Who may decode through `/codec/*`: the session cookie a dashboard sign-in sets (what the
Temporal UI sends with includeCredentials), refused once signed out, and, in production, the UI's
OIDC access token naming our audience, checked against the keys of an identity provider served
here by a real HTTP server (`testkit.oidc_provider`). The API runs for real; Temporal is not
needed (the codec is the API's own)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from core.settings import SettingsError
from devstack.services import free_port
from testkit.oidc_provider import OidcProvider
from tests.api.conftest import OPS, PAYLOAD_KEYS, SUPERVISOR, RunningApi, api_settings, run_api

PAYLOAD = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
           "data": base64.b64encode(b'"hello"').decode()}  # fmt: skip


@contextlib.asynccontextmanager
async def codec_api(pg_dsn: str, s3: Any, **extra: Any) -> AsyncIterator[RunningApi]:
    settings = api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address=f"127.0.0.1:{free_port()}",
                            livekit=None, PAYLOAD_KEYS=PAYLOAD_KEYS, **extra)  # fmt: skip
    async with run_api(settings, wait_temporal=False) as api:
        yield api


async def _decode(api: RunningApi, **kw: Any) -> int:
    r = await api.http("POST", "/codec/decode", json_body={"payloads": [PAYLOAD]}, **kw)
    return r.status


async def test_a_dashboard_sign_in_cookie_unlocks_the_codec_until_sign_out(
    pg_dsn: str, s3: Any, db: asyncpg.Connection
) -> None:
    async with codec_api(pg_dsn, s3) as api:
        assert (await api.http("POST", "/api/session/codec", json_body={})).status == 401
        assert (await api.http("POST", "/api/session/codec", token=OPS, json_body={})).status == 403
        r = await api.http("POST", "/api/session/codec", token=SUPERVISOR, json_body={})
        assert r.status == 204
        set_cookie = r.headers["Set-Cookie"]
        attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
        assert {
            "httponly",
            "path",
            "max-age",
            "samesite",
        } <= attrs and "Path=/;" in set_cookie + ";"
        assert "secure" not in attrs  # plain http here; https (or X-Forwarded-Proto) adds it
        value = set_cookie.split(";")[0].split("=", 1)[1]
        assert SUPERVISOR not in value  # an opaque id, never the token
        cookie = {"Cookie": f"cc_session={value}"}

        assert await _decode(api, headers=cookie) == 200
        assert await _decode(api) == 401
        assert await _decode(api, headers={"Cookie": f"cc_session={value[:-2]}xx"}) == 401

        r = await api.http("POST", "/api/session/codec", token=SUPERVISOR, json_body={},
                           headers={"X-Forwarded-Proto": "https"})  # fmt: skip
        assert "secure" in r.headers["Set-Cookie"].lower()
        # Sign-out revokes the session server-side: the cookie, replayed, no longer decodes.
        r = await api.http("DELETE", "/api/session", headers=cookie)
        assert r.status == 204 and 'cc_session=""' in r.headers["Set-Cookie"]
        assert await _decode(api, headers=cookie) == 401
        revoked = await db.fetchval(
            "SELECT revoked_at FROM sessions WHERE id_hash = sha256($1::bytea)", value.encode()
        )
        assert revoked is not None


async def test_the_uis_oidc_access_token_is_checked_against_the_issuer(
    pg_dsn: str, s3: Any
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with (
        OidcProvider(client_id="callcenter-dashboard") as idp,
        codec_api(
            pg_dsn, s3, CODEC_OIDC_ISSUER=idp.issuer, CODEC_OIDC_AUDIENCE="temporal-ui"
        ) as api,
    ):

        def token(signer: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
            if signer is None:
                return idp.access_token(aud=claims.pop("aud", "temporal-ui"), **claims)
            base = {"iss": idp.issuer, "aud": "temporal-ui", "sub": "alice@example.com",
                    "exp": int(time.time()) + 300, "roles": ["supervisor"]}  # fmt: skip
            return jwt.encode(base | claims, signer, algorithm="RS256", headers={"kid": "test-key"})

        assert await _decode(api, token=token()) == 200
        assert await _decode(api, token=token(roles=["admin", "ops"])) == 200
        assert await _decode(api, token=token(roles=["ops"])) == 403
        assert await _decode(api, token=token(aud="someone-else")) == 401
        assert await _decode(api, token=idp.access_token(aud=None)) == 401  # aud is required
        assert await _decode(api, token=token(iss="https://evil.example")) == 401
        assert await _decode(api, token=token(exp=int(time.time()) - 60)) == 401
        assert await _decode(api, token=token(signer=stranger)) == 401
        assert await _decode(api, token=SUPERVISOR) == 200  # API tokens still work
        r = await api.http("POST", "/codec/decode", token=token(signer=stranger),
                           json_body={"payloads": [PAYLOAD]})  # fmt: skip
        assert "alice" not in json.dumps(r.body)  # nothing of the token in the error


@pytest.mark.parametrize("ttl", [59, 8 * 24 * 3600])
def test_session_ttl_is_validated(pg_dsn: str, s3: Any, ttl: int) -> None:
    with pytest.raises(SettingsError, match="SESSION_TTL_S"):
        api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
                     SESSION_TTL_S=ttl)  # fmt: skip


async def test_only_an_admin_bearer_token_may_encode(pg_dsn: str, s3: Any) -> None:
    """An encoded payload is input the workers trust, sealed under the production key: a
    supervisor (token or dashboard cookie) gets 403, and so does an admin's cookie."""
    from tests.api.conftest import ADMIN

    async with codec_api(pg_dsn, s3) as api:

        async def encode(**kw: Any) -> int:
            r = await api.http("POST", "/codec/encode", json_body={"payloads": [PAYLOAD]}, **kw)
            return r.status

        assert await encode() == 401
        assert await encode(token=SUPERVISOR) == 403
        assert await encode(token=OPS) == 403
        for token in (SUPERVISOR, ADMIN):
            r = await api.http("POST", "/api/session/codec", token=token, json_body={})
            value = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            cookie = {"Cookie": f"cc_session={value}"}
            assert await encode(headers=cookie) == 403
            assert await _decode(api, headers=cookie) == 200
        r = await api.http("POST", "/codec/encode", token=ADMIN, json_body={"payloads": [PAYLOAD]})
        assert r.status == 200 and r.body["payloads"][0]["data"] != PAYLOAD["data"]
