"""Security hardening (issue 14): anonymous cost abuse, hostile input, leaks, LiveKit grants.

Pure pieces (limiter keys, LRU, admission caps, grants) are tested alone; what crosses the
server (status codes, headers, what an answer does not say) against the real stack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from livekit import api as lkapi
from pydantic import SecretStr
from temporalio.service import RPCError, RPCStatusCode

from api.domain.admission import Admission
from api.domain.livekit_room import supervisor_token
from api.domain.workflows_client import temporal_error
from api.errors import RateLimited, Unavailable
from api.ratelimit import RateLimiter, client_key
from api.schemas import INTERIM_TEXT_MAX, InterimRequest, json_utf8_size
from core.models import new_call_id, room_name_for
from core.notify import NOTIFY_MAX_BYTES
from tests.api.conftest import ADMIN, SUPERVISOR, ApiStack, RunningApi, api_settings, run_api


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- rate limit keys and eviction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::1]", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_clients_are_keyed_by_address_and_ipv6_by_its_64(address: str, key: str) -> None:
    assert client_key(address) == key


def test_a_whole_ipv6_64_shares_one_bucket() -> None:
    limiter = RateLimiter(per_minute=2, clock=Clock())
    waits = [limiter.check(client_key(f"2001:db8:0:7::{i:x}")) for i in range(1, 4)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0
    assert limiter.check(client_key("2001:db8:0:8::1")) == 0.0  # the next /64 is another client


def test_the_limiter_evicts_the_least_recently_used_client_never_everyone() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=1, clock=clock, max_clients=3)
    for who in ("a", "b", "c"):
        assert limiter.check(who) == 0.0
    assert limiter.check("a") > 0  # a is limited, and now the most recently used
    assert limiter.check("d") == 0.0  # a new client evicts b, the least recently used
    assert len(limiter) == 3
    assert limiter.check("a") > 0  # a's bucket survived: spraying new keys resets nobody
    assert limiter.check("c") > 0
    assert limiter.check("b") == 0.0  # b was evicted (a fresh bucket)


# --- admission caps -----------------------------------------------------------------------------


async def _none_ended(ids: list[str]) -> set[str]:
    return set()


def _admission(clock: Clock, **kw: Any) -> Admission:
    values = {"max_waiting": 2, "max_per_client": 2, "join_timeout_s": 120.0, "max_call_s": 7200.0}
    return Admission(**(values | kw), clock=clock)


async def test_waiting_calls_are_capped_globally_with_retry_after() -> None:
    clock = Clock()
    adm = _admission(clock, max_per_client=10)
    await adm.admit("a", "c1", _none_ended)
    clock.now += 30
    await adm.admit("b", "c2", _none_ended)
    with pytest.raises(Unavailable) as err:
        await adm.admit("c", "c3", _none_ended)
    assert err.value.status == 503 and err.value.code == "busy"
    assert err.value.headers["Retry-After"] == "90"  # when c1's customer-join wait runs out
    adm.customer_joined("c1")  # its customer came: it no longer waits
    await adm.admit("c", "c3", _none_ended)
    with pytest.raises(Unavailable):
        await adm.admit("d", "c4", _none_ended)
    clock.now += 120  # c2's and c3's customers never came: the workflow has ended them by now
    await adm.admit("d", "c4", _none_ended)


async def test_calls_per_client_are_capped_and_ended_calls_free_their_place() -> None:
    clock = Clock()
    adm = _admission(clock, max_waiting=100)
    await adm.admit("a", "c1", _none_ended)
    await adm.admit("a", "c2", _none_ended)
    with pytest.raises(RateLimited) as err:
        await adm.admit("a", "c3", _none_ended)
    assert err.value.status == 429 and err.value.headers["Retry-After"]
    await adm.admit("b", "c3", _none_ended)  # another client is not affected
    adm.ended("c1")  # seen ending by this instance (webhook)
    await adm.admit("a", "c4", _none_ended)

    asked: list[list[str]] = []

    async def c2_ended(ids: list[str]) -> set[str]:
        asked.append(sorted(ids))
        return {"c2"}

    await adm.admit("a", "c5", c2_ended)  # the table says c2 ended (another instance saw it)
    assert asked == [["c2", "c4"]]
    adm.release("c5")  # a start that failed gives its place back
    assert sorted(adm.of_client("a")) == ["c4"]
    clock.now += 7200  # past MAX_CALL_DURATION_S no call is still live, webhook seen or not
    assert adm.of_client("a") == [] and adm.of_client("b") == [] and adm.waiting() == []


async def test_concurrent_admissions_cannot_all_slip_under_the_cap() -> None:
    adm = _admission(Clock(), max_waiting=3, max_per_client=100)

    async def slow_lookup(ids: list[str]) -> set[str]:
        await asyncio.sleep(0.01)
        return set()

    outcomes = await asyncio.gather(
        *(adm.admit(f"k{i}", f"c{i}", slow_lookup) for i in range(10)), return_exceptions=True
    )
    assert sum(1 for o in outcomes if o is None) == 3
    assert all(isinstance(o, Unavailable) for o in outcomes if o is not None)


# --- LiveKit grants ---------------------------------------------------------------------------


def test_supervisor_tokens_live_15_minutes_and_publish_no_data(api_stack: ApiStack) -> None:
    settings = api_stack.settings
    verifier = lkapi.TokenVerifier(
        settings.LIVEKIT_API_KEY.get_secret_value(), settings.LIVEKIT_API_SECRET.get_secret_value()
    )
    for can_publish in (False, True):
        token, identity, expires_at = supervisor_token(
            settings, "call-abc", "ada", can_publish=can_publish
        )
        claims = verifier.verify(token)
        video = claims.video
        assert video is not None and video.room == "call-abc" and claims.identity == identity
        assert video.can_publish_data is False  # no RPC to the agent, no forged topics
        assert video.can_publish is can_publish and bool(video.hidden) is not can_publish
        if can_publish:
            assert video.can_publish_sources == ["microphone"]
        left = datetime.fromisoformat(expires_at) - datetime.now(UTC)
        assert 14 * 60 < left.total_seconds() <= 15 * 60
        exp = json.loads(_jwt_body(token))["exp"]
        assert abs(exp - datetime.now(UTC).timestamp() - 15 * 60) < 5


def _jwt_body(token: str) -> bytes:
    import base64

    body = token.split(".")[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


async def test_a_customer_token_may_publish_its_microphone_only(api_stack: ApiStack) -> None:
    r = await api_stack.api.http("POST", "/api/calls", json_body={})
    assert r.status == 201, r.body
    try:
        claims = lkapi.TokenVerifier(
            api_stack.livekit.api_key, api_stack.livekit.api_secret
        ).verify(r.body["token"])
        video = claims.video
        assert video is not None and video.can_publish_sources == ["microphone"]
        assert video.can_publish_data is False and not video.room_admin
    finally:
        await api_stack.api.http("POST", f"/api/calls/{r.body['call_id']}/end", token=ADMIN)


# --- hostile input is a 4xx ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("POST", "/api/calls", None),
        ("POST", "/api/get-token", None),
        ("POST", "/codec/decode", SUPERVISOR),
        ("POST", "/api/calls/0123456789abcdef0123/whisper", SUPERVISOR),
    ],
)
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"a":' * 50_000,
        b'{"customer_name": "\\ud800"}',
        b'{"participantName": "\\udfff"}',
        b'{"payloads": [], "x": "\\ud83d"}',
        b'{"text": "hi \\ud800"}',
    ],
)
async def test_hostile_bodies_are_a_4xx(
    api_stack: ApiStack, method: str, path: str, token: str | None, body: bytes
) -> None:
    r = await api_stack.api.http(
        method, path, token=token, data=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= r.status < 500, (path, body[:20], r.status, r.body)
    assert r.error["field"] == "body"


# --- nothing internal in public answers ---------------------------------------------------------


async def test_a_503_of_post_calls_says_nothing_of_the_internals(
    api_stack: ApiStack, pg_dsn: str, s3: Any
) -> None:
    settings = api_settings(
        pg_dsn=pg_dsn,
        s3=s3,
        temporal_address="127.0.0.1:9",
        livekit=api_stack.livekit,
        TEMPORAL_NAMESPACE="secret-namespace",
    )
    async with run_api(settings, wait_temporal=False) as down:
        for path in ("/api/calls", "/api/get-token"):
            r = await down.http("POST", path, json_body={})
            assert r.status == 503 and r.error["code"] == "temporal_unavailable", r.body
            text = json.dumps(r.body)
            for leak in ("127.0.0.1", ":9", "secret-namespace", "Error", "tcp", "connect"):
                assert leak not in text, (leak, text)
        r = await down.http("GET", "/readyz")
        assert r.status == 503
        assert r.body["checks"] == {"temporal": "down", "postgres": "up", "storage": "up"}
        assert "127.0.0.1" not in json.dumps(r.body)
        # nothing was started, so nothing holds a place of the caps
        assert down.app.ctx.admission.of_client("127.0.0.1") == []


async def test_hanging_up_mid_request_keeps_the_place_taken(
    api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that disconnects while its call starts must not slip past the caps: the call
    may well have started (and dispatched an agent) after the handler was cancelled."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_start(self: Any, call_id: str, customer_name: str | None) -> Any:
        started.set()
        try:
            await asyncio.sleep(3600)  # Temporal's answer never comes before the client hangs up
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr("api.domain.workflows_client.CallsClient.issue_token", slow_start)
    async with run_api(api_stack.settings) as api:
        request = asyncio.create_task(api.http("POST", "/api/calls", json_body={}))
        await asyncio.wait_for(started.wait(), 10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.wait_for(cancelled.wait(), 10)  # the server cancelled the handler
        assert len(api.app.ctx.admission.of_client("127.0.0.1")) == 1


async def test_readyz_is_one_bounded_probe_on_its_own_connection(api_stack: ApiStack) -> None:
    async with run_api(api_stack.settings) as api:
        res = api.app.ctx.res
        # requests' pool exhausted: readiness still answers (its connection is its own)
        held = [await res.pool.acquire() for _ in range(res.pool.get_max_size())]
        try:
            r = await asyncio.wait_for(api.http("GET", "/readyz"), 10)
            assert r.status == 200 and r.body["checks"]["postgres"] == "up", r.body
        finally:
            for conn in held:
                await res.pool.release(conn)
        # a flood shares one probe: the probe pool never opens a second connection
        replies = await asyncio.gather(*(api.http("GET", "/readyz") for _ in range(40)))
        assert {r.status for r in replies} == {200}
        assert res.probe_pool.get_max_size() == 1
        assert res.probe_pool.get_size() <= 1


@pytest.mark.parametrize("ch", ["\x01", "\U0001f600", "\u2028", '"', "\\", "é"])
def test_interim_byte_accounting_covers_the_costliest_characters(ch: str) -> None:
    text = ch * INTERIM_TEXT_MAX
    assert InterimRequest(speaker="customer", text=text).text == text
    envelope = {
        "type": "interim_transcript",
        "call_id": "x" * 40,
        "seq": None,
        "at": datetime.now(UTC).isoformat(),
        "data": {"speaker": "assistant", "text": text, "confidence": 0.123456789, "id": "i" * 64},
    }
    envelope["data"]["by"] = "b" * 128  # type: ignore[index]
    assert json_utf8_size(envelope) <= NOTIFY_MAX_BYTES


# --- no silent truncation -----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pg_api(pg_dsn: str, s3: Any) -> AsyncIterator[RunningApi]:
    """The API with PostgreSQL only (Temporal unreachable): enough for tables and sockets."""
    settings = api_settings(pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None)
    async with run_api(settings, wait_temporal=False) as running:
        yield running


async def test_the_transcript_pages_instead_of_stopping(
    pg_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, last_seq) VALUES ($1, $2, 'completed', $3)",
        call_id,
        room_name_for(call_id),
        2 * 2_600,
    )
    # final lines interleaved with other events: pages count lines, `after` counts seqs
    await db.executemany(
        "INSERT INTO call_events (call_id, seq, kind, at, data) "
        "VALUES ($1, $2, $3, now(), $4::text::jsonb)",
        [
            (call_id, seq, kind, json.dumps({"speaker": "customer", "text": f"line {seq}"}))
            for seq in range(1, 2 * 2_600 + 1)
            for kind in ["final_transcript" if seq % 2 else "agent_metrics"]
        ],
    )
    got: list[int] = []
    after, pages = 0, 0
    while True:
        r = await pg_api.http(
            "GET", f"/api/calls/{call_id}/transcript?after={after}&limit=1000", token=SUPERVISOR
        )
        assert r.status == 200, r.body
        pages += 1
        got += [line["seq"] for line in r.body["lines"]]
        assert r.body["last_seq"] == 5_200
        if r.body["next_after"] is None:
            break
        assert len(r.body["lines"]) == 1000 and r.body["next_after"] == got[-1]
        after = r.body["next_after"]
    assert got == list(range(1, 5_200, 2)) and pages == 3  # all 2,600, none twice
    r = await pg_api.http("GET", f"/api/calls/{call_id}/transcript", token=SUPERVISOR)
    assert len(r.body["lines"]) == 1000 and r.body["next_after"] == 1999  # default page
    r = await pg_api.http("GET", f"/api/calls/{call_id}/transcript?limit=5001", token=SUPERVISOR)
    assert r.status == 422 and r.error["field"] == "limit"


async def test_the_live_list_snapshot_carries_every_active_call(
    pg_api: RunningApi, db: asyncpg.Connection
) -> None:
    mine = [new_call_id() for _ in range(450)]
    await db.executemany(
        "INSERT INTO calls (call_id, room_name, status) VALUES ($1, $2, 'in_progress')",
        [(c, room_name_for(c)) for c in mine],
    )
    try:
        async with pg_api.ws("/ws/calls", token=SUPERVISOR) as ws:
            first = json.loads((await ws.receive(timeout=10)).data)
            assert first["type"] == "snapshot" and first["more"] is True
            assert len(first["calls"]) == 200
            seen = [c["call_id"] for c in first["calls"]]
            more = True
            while more:
                page = json.loads((await ws.receive(timeout=10)).data)
                assert page["type"] == "snapshot_more", page
                seen += [c["call_id"] for c in page["calls"]]
                more = page["more"]
        assert set(mine) <= set(seen) and len(seen) == len(set(seen))
    finally:
        await db.execute("DELETE FROM calls WHERE call_id = ANY($1::text[])", mine)


# --- anonymous cost: caps on what calls hold ----------------------------------------------------


async def test_post_calls_is_capped_by_waiting_calls_and_calls_per_address(
    api_stack: ApiStack,
) -> None:
    settings = api_stack.settings.model_copy(
        update={"MAX_WAITING_CALLS": 1, "MAX_CALLS_PER_CLIENT": 2}
    )
    lk = api_stack.livekit
    started: list[dict[str, Any]] = []
    async with run_api(settings) as api:
        await lk.set_webhook_url(f"{api.url}/webhooks/livekit")
        admission = api.app.ctx.admission

        async def eventually(check: Any) -> None:
            for _ in range(100):
                if check():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the webhook never freed the place")

        try:
            r = await api.http("POST", "/api/calls", json_body={})
            assert r.status == 201, r.body
            started.append(r.body)
            # one call waits for its customer: the next is 503, with when to come back
            for path in ("/api/calls", "/api/get-token"):
                busy = await api.http("POST", path, json_body={})
                assert busy.status == 503 and busy.error["code"] == "busy", busy.body
                assert 1 <= int(busy.headers["Retry-After"]) <= settings.CUSTOMER_JOIN_TIMEOUT_S
            # its customer joins (webhook): it no longer waits, and a new call is admitted
            await lk.join(started[0]["room_name"], started[0]["participant_identity"])
            await eventually(lambda: not admission.waiting())
            r = await api.http("POST", "/api/calls", json_body={})
            assert r.status == 201, r.body
            started.append(r.body)
            await lk.join(started[1]["room_name"], started[1]["participant_identity"])
            await eventually(lambda: not admission.waiting())
            # two live calls from this address: a third is 429 whatever the waiting cap
            r = await api.http("POST", "/api/calls", json_body={})
            assert r.status == 429 and r.error["code"] == "too_many_calls", r.body
            assert r.headers["Retry-After"]
            # a customer hangs up (webhook): the address has a place again
            await lk.leave(started[0]["room_name"], started[0]["participant_identity"])
            await eventually(lambda: len(admission.of_client("127.0.0.1")) == 1)
            r = await api.http("POST", "/api/calls", json_body={})
            assert r.status == 201, r.body
            started.append(r.body)
        finally:
            await lk.set_webhook_url(f"{api_stack.api.url}/webhooks/livekit")
            for call in started:
                await api_stack.api.http("POST", f"/api/calls/{call['call_id']}/end", token=ADMIN)


# --- audit names ---------------------------------------------------------------------------------


async def test_the_audit_log_names_who_acted_by_their_token_name(
    api_stack: ApiStack, live_call_id: str, db: asyncpg.Connection
) -> None:
    settings = api_stack.settings.model_copy(
        update={"API_TOKENS": SecretStr(f"ada.lovelace:{SUPERVISOR}:supervisor,{ADMIN}:admin")}
    )
    async with run_api(settings) as api:
        r = await api.http("POST", f"/api/calls/{live_call_id}/monitor", token=SUPERVISOR)
        assert r.status == 201, r.body
        assert r.body["participant_identity"].startswith("supervisor-ada.lovelace-")
    for _ in range(100):
        by = await db.fetch(
            "SELECT data->>'by' AS by FROM call_events WHERE call_id = $1 "
            "AND kind = 'supervisor_action' AND data->>'detail' = $2",
            live_call_id,
            r.body["participant_identity"],
        )
        if by:
            break
        await asyncio.sleep(0.1)
    assert [row["by"] for row in by] == ["ada.lovelace"]
    assert SUPERVISOR not in r.body["participant_identity"]


def test_temporal_rate_limiting_is_a_503_that_names_nothing_internal() -> None:
    exc = RPCError(
        "namespace rate limit exceeded for ns-secret", RPCStatusCode.RESOURCE_EXHAUSTED, b""
    )
    err = temporal_error(exc, "0123456789abcdef0123")
    assert isinstance(err, Unavailable) and err.headers["Retry-After"]
    assert "ns-secret" not in err.message
