"""Anonymous availability and cost abuse (issue 22, item 4): who the client is behind a proxy,
the rate limit and the caps on what calls hold, held in PostgreSQL so that they hold across
several API instances.

Every API instance of the test session shares one database, so a test of the caps starts by
clearing the places (`fresh_limits`) and speaks as addresses of its own (the test's API trusts
127.0.0.1 as a proxy and each request names its client in `X-Forwarded-For`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from api.domain.admission import Admission
from api.errors import RateLimited, Unavailable
from api.ratelimit import forwarded_client
from core.models import new_call_id
from core.settings import SettingsError, parse_networks
from tests.api.conftest import (
    ADMIN,
    ApiStack,
    RunningApi,
    api_settings,
    database_only_api,
    run_api,
)

PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8, fd00::/8")


@pytest.fixture
async def fresh_limits(db: asyncpg.Connection) -> AsyncIterator[None]:
    """No places held and no buckets, before the test and after it (for the tests that follow)."""
    await db.execute("DELETE FROM admissions; DELETE FROM rate_buckets")
    yield
    await db.execute("DELETE FROM admissions; DELETE FROM rate_buckets")


def as_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


# --- who the client is --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy: the header is a lie
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", [], "127.0.0.1"),
        # the client's own entries are left of what the proxies appended: never believed
        ("10.1.1.1", ["6.6.6.6, 198.51.100.1, 10.2.2.2"], "198.51.100.1"),
        ("10.1.1.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # repeated header lines
        ("10.1.1.1", ["10.3.3.3, 10.2.2.2"], "10.3.3.3"),  # only proxies: the farthest
        ("10.1.1.1", ["not-an-address, 10.2.2.2"], "10.2.2.2"),
        ("fd00::5", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:127.0.0.1", ["198.51.100.2"], "198.51.100.2"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert forwarded_client(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert forwarded_client("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_a_malformed_trusted_proxy_is_refused_at_start_up_naming_it(pg_dsn: str, s3: Any) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES") as err:
        api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
                     TRUSTED_PROXIES="10.0.0.0/8,nope")  # fmt: skip
    assert "nope" in str(err.value)


async def _rejoin(api: RunningApi, headers: dict[str, str] | None = None) -> int:
    """A rate-limited customer request that starts nothing: 429, or 422 for its body (which
    is checked after the limit)."""
    path = f"/api/calls/{new_call_id()}/rejoin"
    return (await api.http("POST", path, json_body={"token": "x"}, headers=headers)).status


async def test_a_forged_forwarded_for_is_ignored_unless_a_trusted_proxy_sent_it(
    pg_dsn: str, s3: Any, fresh_limits: None
) -> None:
    # Sanic's PROXIES_COUNT (what was set before) trusts the header from anyone: no longer.
    async with database_only_api(pg_dsn, s3, RATE_LIMIT_PER_MINUTE=2) as direct:
        direct.app.config.PROXIES_COUNT = 1
        statuses = [await _rejoin(direct, as_client(f"198.51.100.{i}")) for i in range(3)]
        assert statuses == [422, 422, 429]  # three "addresses", one client: 127.0.0.1
    async with database_only_api(
        pg_dsn, s3, RATE_LIMIT_PER_MINUTE=2, TRUSTED_PROXIES="127.0.0.1"
    ) as proxied:
        statuses = [await _rejoin(proxied, as_client(f"198.51.100.{i}")) for i in range(3)]
        assert statuses == [422, 422, 422]  # behind our proxy: three clients
        statuses = [await _rejoin(proxied, as_client("6.6.6.6, 198.51.100.0")) for _ in range(2)]
        # the entry our proxy appended counts (198.51.100.0 had one request left), not the one
        # the client wrote itself
        assert statuses == [422, 429]
    async with database_only_api(
        pg_dsn, s3, RATE_LIMIT_PER_MINUTE=2, TRUSTED_PROXIES="10.0.0.0/8"
    ) as elsewhere:
        # 127.0.0.1 is not one of this instance's proxies: its header is ignored
        statuses = [await _rejoin(elsewhere, as_client(f"203.0.113.{i}")) for i in range(3)]
        assert statuses[-1] == 429


# --- the rate limit, across instances -----------------------------------------------------------


async def test_the_rate_limit_holds_across_two_instances_and_refills(
    pg_dsn: str, s3: Any, fresh_limits: None, db: asyncpg.Connection
) -> None:
    me, other = as_client("198.51.100.20"), as_client("198.51.100.21")
    async with (
        database_only_api(pg_dsn, s3, RATE_LIMIT_PER_MINUTE=3, TRUSTED_PROXIES="127.0.0.1") as a,
        database_only_api(pg_dsn, s3, RATE_LIMIT_PER_MINUTE=3, TRUSTED_PROXIES="127.0.0.1") as b,
    ):
        statuses = [await _rejoin(api, me) for api in (a, b, a, b)]
        assert statuses == [422, 422, 422, 429]  # three in all, whichever instance answered
        r = await b.http("POST", f"/api/calls/{new_call_id()}/rejoin", json_body={"token": "x"},
                         headers=me)  # fmt: skip
        assert r.status == 429 and r.error["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 20  # one token every 20 s
        assert await _rejoin(a, other) == 422  # another client is not affected
        # 20 s later (the bucket's clock is the database's: moved back rather than waited for)
        await db.execute(
            "UPDATE rate_buckets SET updated_at = updated_at - interval '20 s' "
            "WHERE client_key = '198.51.100.20'"
        )
        assert [await _rejoin(b, me) for _ in range(2)] == [422, 429]


async def test_refilled_buckets_are_pruned(pg_dsn: str, s3: Any, fresh_limits: None,
                                           db: asyncpg.Connection) -> None:  # fmt: skip
    async with database_only_api(
        pg_dsn, s3, RATE_LIMIT_PER_MINUTE=3, TRUSTED_PROXIES="127.0.0.1"
    ) as api:
        for i in range(3):
            await _rejoin(api, as_client(f"198.51.100.{30 + i}"))
        await db.execute(
            "UPDATE rate_buckets SET updated_at = now() - interval '61 s' "
            "WHERE client_key <> '198.51.100.32'"
        )
        assert await api.app.ctx.rate_limiter.prune(api.app.ctx.res.db) == 2
        keys = await db.fetch("SELECT client_key FROM rate_buckets")
        assert [r["client_key"] for r in keys] == ["198.51.100.32"]


# --- the caps on what calls hold -------------------------------------------------------------


@pytest.fixture
async def started(api_stack: ApiStack) -> AsyncIterator[list[str]]:
    """Call ids a test started: ended by the admin when it is done."""
    ids: list[str] = []
    yield ids
    for call_id in ids:
        await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)


async def _call(api: RunningApi, address: str, started: list[str], path: str = "/api/calls") -> Any:
    r = await api.http("POST", path, json_body={}, headers=as_client(address))
    if r.status in (200, 201):
        started.append(r.body["call_id"])
    return r


async def test_one_address_gets_its_fair_share_of_waiting_places_and_others_still_get_in(
    api_stack: ApiStack, fresh_limits: None, started: list[str]
) -> None:
    settings = api_stack.settings.model_copy(update={
        "MAX_WAITING_CALLS": 6, "MAX_CALLS_PER_CLIENT": 10, "TRUSTED_PROXIES": "127.0.0.1"})  # fmt: skip
    async with run_api(settings) as api:
        hog = "203.0.113.66"
        # the first half of the places is first come, first served
        assert [(await _call(api, hog, started)).status for _ in range(3)] == [201, 201, 201]
        # from then on an address with a call waiting gets no second place...
        r = await _call(api, hog, started, "/api/get-token")
        assert r.status == 429 and r.error["code"] == "waiting_share_used", r.body
        assert 1 <= int(r.headers["Retry-After"]) <= settings.CUSTOMER_JOIN_TIMEOUT_S
        # ...while every address with none still gets in, until the places are full
        for i in range(3):
            r = await _call(api, f"203.0.113.{i}", started)
            assert r.status == 201, r.body
        r = await _call(api, "203.0.113.99", started)
        assert r.status == 503 and r.error["code"] == "busy", r.body
        held = await api.app.ctx.admission.held(api.app.ctx.res.db, hog)
        assert (held.waiting, held.mine_waiting) == (6, 3)


async def test_seventeen_addresses_no_longer_fill_fifty_waiting_places(
    pg_dsn: str, fresh_limits: None
) -> None:
    """The issue's attack: 17 addresses x 3 calls took all 50 places. Now the second half of
    the places goes one per address: they get 33, and 17 more addresses still get in."""
    admission = Admission(max_waiting=50, max_per_client=3, max_live=1000, join_timeout_s=120,
                          max_call_s=7200)  # fmt: skip
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) as pool:
        taken = 0
        for i in range(17):
            for _ in range(3):
                try:
                    await admission.admit(pool, f"192.0.2.{i}", new_call_id())
                    taken += 1
                except RateLimited as exc:
                    assert exc.code == "waiting_share_used"
        assert taken == 33
        for i in range(17):
            await admission.admit(pool, f"198.51.100.{i}", new_call_id())
        with pytest.raises(Unavailable):
            await admission.admit(pool, "198.51.100.200", new_call_id())
        assert (await admission.held(pool)).waiting == 50


async def test_the_live_call_cap_holds_across_two_instances(
    api_stack: ApiStack, fresh_limits: None, started: list[str]
) -> None:
    settings = api_stack.settings.model_copy(update={"MAX_LIVE_AI_CALLS": 3,
                                                     "TRUSTED_PROXIES": "127.0.0.1"})  # fmt: skip
    lk = api_stack.livekit
    async with run_api(settings) as a, run_api(settings) as b:
        await lk.set_webhook_url(f"{a.url}/webhooks/livekit")
        try:
            calls = []
            for i, api in enumerate((a, b, a)):
                r = await _call(api, f"198.51.100.{100 + i}", started)
                assert r.status == 201, r.body
                calls.append(r.body)
            # a customer joins (the webhook reaches instance a): the call waits no more, but
            # it is live, and so it still counts on both instances
            await lk.join(calls[0]["room_name"], calls[0]["participant_identity"])
            await _eventually(lambda: _waiting(b), 2)
            for api in (b, a):
                r = await _call(api, "198.51.100.110", started)
                assert r.status == 503 and r.error["code"] == "at_capacity", r.body
                assert r.headers["Retry-After"] and "agents are busy" in r.error["message"]
            # one call ends (the calls table says so): either instance admits one more
            await a.http("POST", f"/api/calls/{started[1]}/end", token=ADMIN)
            r = await _retry_until_admitted(b, "198.51.100.111", started)
            assert r.status == 201, r.body
            r = await _call(a, "198.51.100.112", started)
            assert r.status == 503 and r.error["code"] == "at_capacity", r.body
        finally:
            await lk.set_webhook_url(f"{api_stack.api.url}/webhooks/livekit")


async def test_leaving_to_rejoin_keeps_the_place_and_the_end_frees_it(
    api_stack: ApiStack, fresh_limits: None, started: list[str]
) -> None:
    """A customer who left may rejoin within the grace, so the call keeps its place (leaving
    and rejoining is no way around the caps) until the call has ended."""
    settings = api_stack.settings.model_copy(update={
        "MAX_CALLS_PER_CLIENT": 1, "TRUSTED_PROXIES": "127.0.0.1",
        "CUSTOMER_REJOIN_GRACE_S": 3600})  # fmt: skip
    lk, me = api_stack.livekit, "198.51.100.150"
    async with run_api(settings) as api:
        await lk.set_webhook_url(f"{api.url}/webhooks/livekit")
        try:
            call = (await _call(api, me, started)).body
            await lk.join(call["room_name"], call["participant_identity"])
            await _state_until(api, call["call_id"], lambda st: st["status"] == "in_progress")
            await lk.leave(call["room_name"], call["participant_identity"])
            await _state_until(api, call["call_id"], lambda st: st["customer_reconnecting"])
            r = await _call(api, me, started)
            assert r.status == 429 and r.error["code"] == "too_many_calls", r.body
            await api.http("POST", f"/api/calls/{call['call_id']}/end", token=ADMIN)
            r = await _retry_until_admitted(api, me, started)
            assert r.status == 201, r.body
        finally:
            await lk.set_webhook_url(f"{api_stack.api.url}/webhooks/livekit")


async def _state_until(api: RunningApi, call_id: str, check: Any) -> None:
    for _ in range(150):
        r = await api.http("GET", f"/api/calls/{call_id}", token=ADMIN)
        if r.status == 200 and r.body["state"] and check(r.body["state"]):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"call {call_id} never got there: {r.body}")


async def _waiting(api: RunningApi) -> int:
    return (await api.app.ctx.admission.held(api.app.ctx.res.db)).waiting


async def _eventually(value: Any, expected: Any) -> None:
    for _ in range(150):
        if await value() == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never became {expected!r}")


async def _retry_until_admitted(api: RunningApi, address: str, started: list[str]) -> Any:
    """An end reaches the calls table with the workflow's next batch: try until it has."""
    for _ in range(150):
        r = await _call(api, address, started)
        if r.status not in (429, 503):
            return r
        await asyncio.sleep(0.1)
    return r
