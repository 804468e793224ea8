"""Security hardening (issue 14): anonymous cost abuse, hostile input, leaks, LiveKit grants.

Pure pieces (limiter keys, grants) are tested alone (the limits and caps, which live in
PostgreSQL, in tests/api/test_abuse.py); what crosses the
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

from api.domain.livekit_room import supervisor_token
from api.domain.workflows_client import temporal_error
from api.errors import Unavailable
from api.ratelimit import client_key
from api.schemas import INTERIM_TEXT_MAX, InterimRequest, json_utf8_size
from core.models import new_call_id, room_name_for
from core.notify import NOTIFY_MAX_BYTES
from tests.api.conftest import ADMIN, SUPERVISOR, ApiStack, RunningApi, api_settings, run_api

# --- rate limit keys ---------------------------------------------------------------


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
        TRUSTED_PROXIES="127.0.0.1",
    )
    client = {"X-Forwarded-For": "198.51.100.77"}  # an address of this test's own
    async with run_api(settings, wait_temporal=False) as down:
        for path in ("/api/calls", "/api/get-token"):
            r = await down.http("POST", path, json_body={}, headers=client)
            assert r.status == 503 and r.error["code"] == "temporal_unavailable", r.body
            text = json.dumps(r.body)
            for leak in ("127.0.0.1", ":9", "secret-namespace", "Error", "tcp", "connect"):
                assert leak not in text, (leak, text)
        r = await down.http("GET", "/readyz")
        assert r.status == 503
        assert r.body["checks"] == {"temporal": "down", "postgres": "up", "storage": "up"}
        assert "127.0.0.1" not in json.dumps(r.body)
        # nothing was started, so nothing holds a place of the caps
        held = await down.app.ctx.admission.held(down.app.ctx.res.db, "198.51.100.77")
        assert held.mine == 0


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
    settings = api_stack.settings.model_copy(update={"TRUSTED_PROXIES": "127.0.0.1"})
    client = {"X-Forwarded-For": "198.51.100.78"}  # an address of this test's own
    async with run_api(settings) as api:
        request = asyncio.create_task(api.http("POST", "/api/calls", json_body={}, headers=client))
        await asyncio.wait_for(started.wait(), 10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.wait_for(cancelled.wait(), 10)  # the server cancelled the handler
        held = await api.app.ctx.admission.held(api.app.ctx.res.db, "198.51.100.78")
        assert held.mine == 1


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
