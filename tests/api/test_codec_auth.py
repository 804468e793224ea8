"""Who may decode through `/codec/*`: the cookie a dashboard sign-in sets (what the Temporal UI
sends with includeCredentials) and, in production, the UI's OIDC access token, checked against
the issuer's JWKS served here by a real HTTP server. The API runs for real; Temporal is not
needed (the codec is the API's own)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import Principal
from api.codec_auth import CodecSessions
from core.settings import SettingsError
from devstack.services import free_port
from tests.api.conftest import OPS, PAYLOAD_KEYS, SUPERVISOR, RunningApi, api_settings, run_api

PAYLOAD = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
           "data": base64.b64encode(b'"hello"').decode()}  # fmt: skip


@contextlib.asynccontextmanager
async def _jwks_server(keys: list[rsa.RSAPrivateKey]) -> AsyncIterator[str]:
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": f"k{i}",
         "use": "sig", "alg": "RS256"} for i, k in enumerate(keys)]}  # fmt: skip
    app = web.Application()

    async def serve(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _api(pg_dsn: str, s3: Any, **extra: Any) -> AsyncIterator[RunningApi]:
    settings = api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address=f"127.0.0.1:{free_port()}",
                            livekit=None, PAYLOAD_KEYS=PAYLOAD_KEYS, **extra)  # fmt: skip
    async with run_api(settings, wait_temporal=False) as api:
        yield api


async def _decode(api: RunningApi, **kw: Any) -> int:
    r = await api.http("POST", "/codec/decode", json_body={"payloads": [PAYLOAD]}, **kw)
    return r.status


async def test_a_dashboard_sign_in_cookie_unlocks_the_codec(pg_dsn: str, s3: Any) -> None:
    async with _api(pg_dsn, s3) as api:
        assert (await api.http("POST", "/api/session/codec", json_body={})).status == 401
        assert (await api.http("POST", "/api/session/codec", token=OPS, json_body={})).status == 403
        r = await api.http("POST", "/api/session/codec", token=SUPERVISOR, json_body={})
        assert r.status == 204
        set_cookie = r.headers["Set-Cookie"]
        attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
        assert {"httponly", "path", "max-age", "samesite"} <= attrs and "Path=/codec" in set_cookie
        assert "secure" not in attrs  # plain http here; https (or X-Forwarded-Proto) adds it
        value = set_cookie.split(";")[0].split("=", 1)[1]
        assert SUPERVISOR not in value  # a signed session, never the token

        assert await _decode(api, headers={"Cookie": f"cc_codec={value}"}) == 200
        assert await _decode(api) == 401
        body, _, mac = value.partition(".")
        forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
        assert await _decode(api, headers={"Cookie": f"cc_codec={forged}"}) == 401

        sessions = CodecSessions(api.app.ctx.settings)
        old = sessions.issue(Principal("supervisor", "supervisor-x"), now=time.time() - 9 * 3600)
        assert await _decode(api, headers={"Cookie": f"cc_codec={old}"}) == 401
        ops = sessions.issue(Principal("ops", "ops-x"))
        assert await _decode(api, headers={"Cookie": f"cc_codec={ops}"}) == 403

        r = await api.http("POST", "/api/session/codec", token=SUPERVISOR, json_body={},
                           headers={"X-Forwarded-Proto": "https"})  # fmt: skip
        assert "secure" in r.headers["Set-Cookie"].lower()
        r = await api.http("DELETE", "/api/session/codec")
        assert r.status == 204 and 'cc_codec=""' in r.headers["Set-Cookie"]


async def test_the_uis_oidc_access_token_is_checked_against_the_issuer(
    pg_dsn: str, s3: Any
) -> None:
    key, stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    async with (
        _jwks_server([key]) as issuer,
        _api(pg_dsn, s3, CODEC_OIDC_ISSUER=issuer, CODEC_OIDC_AUDIENCE="temporal-ui") as api,
    ):

        def token(signer: rsa.RSAPrivateKey = key, **claims: Any) -> str:
            base = {"iss": issuer, "aud": "temporal-ui", "sub": "alice@example.com",
                    "exp": int(time.time()) + 300, "roles": ["supervisor"]}  # fmt: skip
            return jwt.encode(base | claims, signer, algorithm="RS256", headers={"kid": "k0"})

        assert await _decode(api, token=token()) == 200
        assert await _decode(api, token=token(roles=["admin", "ops"])) == 200
        assert await _decode(api, token=token(roles=["ops"])) == 403
        assert await _decode(api, token=token(aud="someone-else")) == 401
        assert await _decode(api, token=token(iss="https://evil.example")) == 401
        assert await _decode(api, token=token(exp=int(time.time()) - 10)) == 401
        assert await _decode(api, token=token(signer=stranger)) == 401
        assert await _decode(api, token=SUPERVISOR) == 200  # API tokens still work
        r = await api.http("POST", "/codec/decode", token=token(signer=stranger),
                           json_body={"payloads": [PAYLOAD]})  # fmt: skip
        assert "alice" not in json.dumps(r.body)  # nothing of the token in the error


@pytest.mark.parametrize("ttl", [59, 8 * 24 * 3600])
def test_session_ttl_is_validated(pg_dsn: str, s3: Any, ttl: int) -> None:
    with pytest.raises(SettingsError, match="CODEC_SESSION_TTL_S"):
        api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
                     CODEC_SESSION_TTL_S=ttl)  # fmt: skip


async def test_only_an_admin_bearer_token_may_encode(pg_dsn: str, s3: Any) -> None:
    """An encoded payload is input the workers trust, sealed under the production key: a
    supervisor (token or dashboard cookie) gets 403, and so does an admin's cookie."""
    from tests.api.conftest import ADMIN

    async with _api(pg_dsn, s3) as api:

        async def encode(**kw: Any) -> int:
            r = await api.http("POST", "/codec/encode", json_body={"payloads": [PAYLOAD]}, **kw)
            return r.status

        assert await encode() == 401
        assert await encode(token=SUPERVISOR) == 403
        assert await encode(token=OPS) == 403
        sessions = CodecSessions(api.app.ctx.settings)
        for role in ("supervisor", "admin"):
            cookie = sessions.issue(Principal(role, f"{role}-x"))
            assert await encode(headers={"Cookie": f"cc_codec={cookie}"}) == 403
            assert await _decode(api, headers={"Cookie": f"cc_codec={cookie}"}) == 200
        r = await api.http("POST", "/codec/encode", token=ADMIN, json_body={"payloads": [PAYLOAD]})
        assert r.status == 200 and r.body["payloads"][0]["data"] != PAYLOAD["data"]
