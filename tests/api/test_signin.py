"""People sign in to the dashboard as themselves: OIDC authorization code with PKCE against an
identity provider the tests run (`testkit.oidc_provider`, a real HTTP server), sessions kept
server-side in PostgreSQL, signed out (revoked) for every API instance and the codec at once.
The API runs for real; Temporal is needed only by the audit test (the call's own log)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from core.settings import SettingsError
from devstack.services import free_port
from testkit.oidc_provider import OidcProvider, User
from tests.api.conftest import ApiStack, RunningApi, api_settings, run_api
from tests.api.test_codec_auth import PAYLOAD, codec_api

CLIENT_ID = "callcenter-dashboard"


@dataclass
class SignedIn:
    status: int  # the callback's answer: 303 when signed in
    body: Any
    cookie: str | None  # the cc_session value
    set_cookie: str
    location: str


class Browser:
    """What a browser does in a sign-in: follows redirects by hand, keeps cookies."""

    def __init__(self, api: RunningApi) -> None:
        self.api = api
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def start(self, return_to: str = "/dashboard") -> str:
        """GET /auth/login; return the identity provider's /authorize URL it redirects to."""
        async with self.http.get(f"{self.api.url}/auth/login", params={"return_to": return_to},
                                 allow_redirects=False) as r:  # fmt: skip
            assert r.status == 302, await r.text()
            return r.headers["Location"]

    async def authorize(self, url: str) -> str:
        """The provider signs its user in; return the callback URL it sends the browser to."""
        async with self.http.get(url, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return r.headers["Location"]

    async def callback(self, url: str) -> SignedIn:
        async with self.http.get(url, allow_redirects=False) as r:
            body = await r.json() if r.content_type == "application/json" else None
            set_cookie = ",".join(r.headers.getall("Set-Cookie", []))
            cookie = r.cookies.get("cc_session")
            return SignedIn(r.status, body, cookie.value if cookie and cookie.value else None,
                            set_cookie, r.headers.get("Location", ""))  # fmt: skip

    async def sign_in(self) -> SignedIn:
        return await self.callback(await self.authorize(await self.start()))

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Origin": self.api.url} | kw.pop("headers", {})
        async with self.http.request(method, self.api.url + path, headers=headers, **kw) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)


@contextlib.asynccontextmanager
async def signin_api(
    pg_dsn: str, s3: Any, idp: OidcProvider, **extra: Any
) -> AsyncIterator[RunningApi]:
    async with codec_api(pg_dsn, s3, CODEC_OIDC_ISSUER=idp.issuer, CODEC_OIDC_AUDIENCE="temporal-ui",
                         DASHBOARD_OIDC_CLIENT_ID=CLIENT_ID, **extra) as api:  # fmt: skip
        yield api


@contextlib.asynccontextmanager
async def browser_on(api: RunningApi) -> AsyncIterator[Browser]:
    b = Browser(api)
    try:
        yield b
    finally:
        await b.close()


async def _sessions(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM sessions"))


async def test_sign_in_round_trip_with_pkce(pg_dsn: str, s3: Any, db: asyncpg.Connection) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
        browser_on(api) as browser,
    ):
        authorize = await browser.start()
        q = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(idp.issuer + "/authorize?")
        assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
        assert q["client_id"] == [CLIENT_ID] and "openid" in q["scope"][0].split()
        assert q["redirect_uri"] == [f"{api.url}/auth/callback"] and q["state"] and q["nonce"]
        back = await browser.authorize(authorize)
        done = await browser.callback(back)
        assert done.status == 303 and done.location == "/dashboard", done.body
        assert done.cookie and not idp.token_errors
        attrs = done.set_cookie.lower()
        assert "httponly" in attrs and "samesite=lax" in attrs and "path=/;" in attrs + ";"
        assert "secure" not in attrs  # plain http here
        # The table holds the id's hash only.
        digest = hashlib.sha256(done.cookie.encode()).digest()
        row = await db.fetchrow("SELECT * FROM sessions WHERE id_hash = $1", digest)
        assert row is not None and row["via"] == "oidc" and row["subject"] == "u-1001"
        assert done.cookie not in str(dict(row))

        status, me = await browser.call("GET", "/api/session")
        assert status == 200 and me["person"] == "alice@example.com", me
        assert me["roles"] == ["supervisor"] and me["via"] == "session" and me["expires_at"]
        assert (await browser.call("POST", "/codec/decode", json={"payloads": [PAYLOAD]}))[0] == 200

        # The same code and state again: the sign-in was used up.
        again = await browser.callback(back)
        assert again.status == 400 and again.body["error"]["field"] == "state", again.body


async def test_a_code_redeemed_without_its_pkce_verifier_is_refused(
    pg_dsn: str, s3: Any, db: asyncpg.Connection
) -> None:
    """Code injection: an attacker's browser finishes its own sign-in with the victim's code.
    The API sends the attacker's sign-in's verifier, which is not the victim's: the provider
    answers invalid_grant and nobody is signed in."""
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
        browser_on(api) as victim,
        browser_on(api) as attacker,
    ):
        before = await _sessions(db)
        victims_back = await victim.authorize(await victim.start())
        attackers_back = await attacker.authorize(await attacker.start())
        stolen = parse_qs(urlsplit(victims_back).query)["code"][0]
        own_state = parse_qs(urlsplit(attackers_back).query)["state"][0]
        done = await attacker.callback(f"{api.url}/auth/callback?code={stolen}&state={own_state}")
        assert done.status == 401 and done.body["error"]["code"] == "sign_in_failed", done.body
        assert idp.token_errors == ["invalid_grant"] and done.cookie is None
        assert await _sessions(db) == before

        # A state this browser did not start is refused before the provider is asked.
        victims_state = parse_qs(urlsplit(victims_back).query)["state"][0]
        mixed = await attacker.callback(f"{api.url}/auth/callback?code=x&state={victims_state}")
        assert mixed.status == 400 and mixed.body["error"]["code"] == "state_mismatch"
        missing = await attacker.callback(f"{api.url}/auth/callback?state={own_state}")
        assert missing.status == 422 and missing.body["error"]["field"] == "code"
        idp.deny = True
        denied = await attacker.callback(await attacker.authorize(await attacker.start()))
        assert denied.status == 401 and denied.body["error"]["code"] == "sign_in_refused"
        assert await _sessions(db) == before


@pytest.mark.parametrize(
    "audience", ["another-app", ["another-app", CLIENT_ID]], ids=["other", "several-no-azp"]
)
async def test_an_id_token_without_our_audience_is_refused_at_sign_in(
    pg_dsn: str, s3: Any, db: asyncpg.Connection, audience: str | list[str]
) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
        browser_on(api) as browser,
    ):
        before = await _sessions(db)
        idp.id_token_audience = audience
        done = await browser.sign_in()
        assert done.status == 401 and done.body["error"]["code"] == "sign_in_failed", done.body
        assert done.cookie is None and await _sessions(db) == before


async def test_an_access_token_without_our_audience_is_refused_on_the_codec(
    pg_dsn: str, s3: Any
) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
    ):

        async def decode(token: str) -> int:
            r = await api.http(
                "POST", "/codec/decode", token=token, json_body={"payloads": [PAYLOAD]}
            )
            return r.status

        assert await decode(idp.access_token(aud="temporal-ui")) == 200
        assert await decode(idp.access_token(aud=None)) == 401
        assert await decode(idp.access_token(aud="another-app")) == 401
        assert await decode(idp.access_token(aud=CLIENT_ID)) == 401  # the dashboard's is not ours


def test_an_issuer_without_an_audience_does_not_start(pg_dsn: str, s3: Any) -> None:
    with pytest.raises(SettingsError, match="CODEC_OIDC_AUDIENCE"):
        api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
                     CODEC_OIDC_ISSUER="https://idp.example")  # fmt: skip
    with pytest.raises(SettingsError, match="DASHBOARD_OIDC_CLIENT_ID"):
        api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
                     DASHBOARD_OIDC_CLIENT_ID=CLIENT_ID)  # fmt: skip


async def test_expired_and_revoked_sessions_are_refused_by_every_instance(
    pg_dsn: str, s3: Any, db: asyncpg.Connection
) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
        signin_api(pg_dsn, s3, idp) as other,
        browser_on(api) as browser,
        browser_on(other) as elsewhere,
    ):
        done = await browser.sign_in()
        assert done.cookie
        elsewhere.http.cookie_jar.update_cookies({"cc_session": done.cookie})
        assert (await elsewhere.call("GET", "/api/session"))[0] == 200  # one table, two APIs

        status, _ = await browser.call("DELETE", "/api/session")  # sign out
        assert status == 204
        row = await db.fetchrow("SELECT revoked_at FROM sessions WHERE id_hash = $1",
                                hashlib.sha256(done.cookie.encode()).digest())  # fmt: skip
        assert row is not None and row["revoked_at"] is not None
        # The old cookie, kept by someone: refused here, on the other instance, and by the codec.
        for b in (browser, elsewhere):
            b.http.cookie_jar.update_cookies({"cc_session": done.cookie})
            assert (await b.call("GET", "/api/session"))[0] == 401
            assert (await b.call("POST", "/codec/decode", json={"payloads": [PAYLOAD]}))[0] == 401

        later = await browser.sign_in()
        assert later.cookie and (await browser.call("GET", "/api/session"))[0] == 200
        await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second' "
                         "WHERE id_hash = $1", hashlib.sha256(later.cookie.encode()).digest())  # fmt: skip
        assert (await browser.call("GET", "/api/session"))[0] == 401
        assert (await browser.call("POST", "/codec/decode", json={"payloads": [PAYLOAD]}))[0] == 401


async def test_roles_come_from_the_claim(pg_dsn: str, s3: Any, db: asyncpg.Connection) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID, roles_claim="groups") as idp,
        signin_api(pg_dsn, s3, idp, CODEC_OIDC_ROLES_CLAIM="groups") as api,
        browser_on(api) as browser,
    ):
        idp.user = User(sub="u-2", email=None, name="Olu Ops", roles=["ops", "staff"])
        assert (await browser.sign_in()).status == 303
        status, me = await browser.call("GET", "/api/session")
        assert me["roles"] == ["ops"] and me["person"] == "u-2"  # no email: the subject
        assert (await browser.call("POST", "/codec/decode", json={"payloads": [PAYLOAD]}))[0] == 403
        assert (await browser.call("POST", "/api/session/codec", json={}))[0] == 403

        idp.user = User(sub="u-3", roles=["supervisor", "admin"])
        assert (await browser.sign_in()).status == 303
        assert (await browser.call("GET", "/api/session"))[1]["roles"] == ["admin", "supervisor"]

        before = await _sessions(db)
        idp.user = User(sub="u-4", roles=["staff"])
        done = await browser.sign_in()
        assert done.status == 403 and done.body["error"]["code"] == "no_role", done.body
        assert await _sessions(db) == before


async def test_a_session_cookie_acts_only_from_this_sites_pages(pg_dsn: str, s3: Any) -> None:
    async with (
        OidcProvider(client_id=CLIENT_ID) as idp,
        signin_api(pg_dsn, s3, idp) as api,
        browser_on(api) as browser,
    ):
        assert (await browser.sign_in()).status == 303
        own = await browser.call("POST", "/api/session/codec", json={})
        assert own[0] == 204
        for origin in ("http://evil.example", f"http://127.0.0.1:{free_port()}", ""):
            status, body = await browser.call("POST", "/api/session/codec", json={},
                                              headers={"Origin": origin})  # fmt: skip
            assert status == 403 and body["error"]["code"] == "cross_origin", (origin, body)
        async with browser.http.ws_connect(api.url.replace("http", "ws") + "/ws/calls",
                                           headers={"Origin": "http://evil.example"}) as ws:  # fmt: skip
            refused = await ws.receive_json()
            assert refused["error"]["code"] == "cross_origin"
        assert (await browser.call("GET", "/api/calls?limit=1"))[0] != 401  # a read is fine


async def test_sign_in_is_404_when_not_configured(pg_dsn: str, s3: Any) -> None:
    async with codec_api(pg_dsn, s3) as api:
        r = await api.http("GET", "/auth/login")
        assert r.status == 404 and r.error["code"] == "sign_in_not_configured"
        r = await api.http("GET", "/api/session/sign-in")
        assert r.body == {"oidc": False, "login_url": None}
        r = await api.http("GET", "/api/session")
        assert r.status == 401


async def test_return_to_stays_on_this_site(pg_dsn: str, s3: Any) -> None:
    async with OidcProvider(client_id=CLIENT_ID) as idp, signin_api(pg_dsn, s3, idp) as api:
        for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = await api.http("GET", f"/auth/login?return_to={bad}")
            assert r.status == 422 and r.error["field"] == "return_to", (bad, r.body)
        r = await api.http("GET", "/api/session/sign-in")
        assert r.body == {"oidc": True, "login_url": "/auth/login"}


async def test_the_audit_names_the_signed_in_person(
    api_stack: ApiStack, live_call_id: str, db: asyncpg.Connection
) -> None:
    async with OidcProvider(client_id=CLIENT_ID) as idp:
        settings = api_stack.settings.model_copy(update={
            "CODEC_OIDC_ISSUER": idp.issuer, "CODEC_OIDC_AUDIENCE": "temporal-ui",
            "DASHBOARD_OIDC_CLIENT_ID": CLIENT_ID})  # fmt: skip
        async with run_api(settings) as api, browser_on(api) as browser:
            assert (await browser.sign_in()).status == 303
            status, body = await browser.call("POST", f"/api/calls/{live_call_id}/monitor")
            assert status == 201, body
    by: list[Any] = []
    for _ in range(100):
        by = await db.fetch(
            "SELECT data->>'by' AS by FROM call_events WHERE call_id = $1 "
            "AND kind = 'supervisor_action' AND data->>'detail' = $2",
            live_call_id,
            body["participant_identity"],
        )
        if by:
            break
        await asyncio.sleep(0.1)
    assert [row["by"] for row in by] == ["alice@example.com"]
