"""Live fan-out: PostgreSQL NOTIFY -> WebSocket, ordering, `after` on reconnect, slow subscribers,
interim transcripts, and WebSocket authentication.

Rows are written here the way the workflow's activity writes them (row, then NOTIFY
`call_events` with `{"call_id", "seq", "kind"}` in the same transaction), so these tests need
only PostgreSQL; the whole path through the workflow is in test_call_flow.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from livekit import api as lkapi

from core.models import new_call_id, room_name_for
from core.notify import EVENTS_CHANNEL
from tests.api.conftest import OPS, SUPERVISOR, RunningApi, database_only_api


@pytest.fixture(scope="module")
async def live_api(pg_dsn: str, s3: Any) -> AsyncIterator[RunningApi]:
    async with database_only_api(pg_dsn, s3) as running:
        yield running


async def insert_call(db: asyncpg.Connection, call_id: str, status: str = "in_progress") -> None:
    await db.execute(
        "INSERT INTO calls (call_id, room_name, customer_name, status) VALUES ($1, $2, 'Ana', $3)",
        call_id,
        room_name_for(call_id),
        status,
    )


async def append(db: asyncpg.Connection, call_id: str, first: int, texts: list[str]) -> None:
    """Append final lines seq first.. in one transaction, one NOTIFY per row (as the workflow does)."""
    async with db.transaction():
        for i, text in enumerate(texts):
            seq = first + i
            await db.execute(
                "INSERT INTO call_events (call_id, seq, kind, at, data) "
                "VALUES ($1, $2, 'final_transcript', now(), $3::jsonb)",
                call_id,
                seq,
                json.dumps({"speaker": "customer", "text": text}),
            )
            await db.execute(
                "SELECT pg_notify($1, $2)",
                EVENTS_CHANNEL,
                json.dumps({"call_id": call_id, "seq": seq, "kind": "final_transcript"}),
            )
        await db.execute(
            "UPDATE calls SET last_seq = $2 WHERE call_id = $1", call_id, first + len(texts) - 1
        )


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def receive_seqs(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        m = await receive(ws)
        if m["type"] == "final_transcript":
            seqs.append(m["seq"])
    return seqs


async def test_snapshot_then_history_then_live_lines_in_order(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    await append(db, call_id, 1, ["hello", "I want a truck"])
    async with live_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        snap = await receive(ws)
        assert snap["type"] == "snapshot" and snap["call"]["call_id"] == call_id
        first = [await receive(ws), await receive(ws)]
        assert [(m["seq"], m["data"]["text"]) for m in first] == [
            (1, "hello"),
            (2, "I want a truck"),
        ]
        await append(db, call_id, 3, ["a red one", "under 40k"])
        live = [await receive(ws), await receive(ws)]
        assert [m["seq"] for m in live] == [3, 4]
        assert live[0] == {
            "type": "final_transcript",
            "call_id": call_id,
            "seq": 3,
            "at": live[0]["at"],
            "data": {"speaker": "customer", "text": "a red one"},
        }


async def test_many_calls_in_one_batch_each_get_their_own_lines_in_order(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    """One transaction notifies a dozen calls at once: the hub reads them side by side
    (`FETCH_CONCURRENCY`), and each dashboard still gets exactly its lines, in order."""
    calls = [new_call_id() for _ in range(12)]
    for call_id in calls:
        await insert_call(db, call_id)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(live_api.ws(f"/ws/calls/{c}", token=SUPERVISOR))
            for c in calls
        ]
        for ws in sockets:
            assert (await receive(ws))["type"] == "snapshot"
        async with db.transaction():  # every call's rows and NOTIFYs arrive together
            for call_id in calls:
                await append(db, call_id, 1, [f"{call_id} one", f"{call_id} two"])
        for call_id, ws in zip(calls, sockets, strict=True):
            got = [await receive(ws), await receive(ws)]
            assert [(m["call_id"], m["seq"], m["data"]["text"]) for m in got] == [
                (call_id, 1, f"{call_id} one"),
                (call_id, 2, f"{call_id} two"),
            ]


async def test_reconnect_with_after_misses_nothing(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    await append(db, call_id, 1, ["one", "two"])
    async with live_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        await receive(ws)
        assert await receive_seqs(ws, 2) == [1, 2]
    # lines appended while the dashboard was away
    await append(db, call_id, 3, ["three", "four", "five"])
    async with live_api.ws(f"/ws/calls/{call_id}?after=2", token=SUPERVISOR) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await append(db, call_id, 6, ["six"])
        assert await receive_seqs(ws, 4) == [3, 4, 5, 6]


async def test_a_stuck_subscriber_resyncs_and_never_slows_the_others(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    hub = live_api.app.ctx.res.live
    old_size = hub.queue_size
    async with live_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        await receive(ws)
        hub.queue_size = 4  # later subscribers get a tiny queue: a burst overflows it
        stuck = hub.subscribe(call_id)  # never read at all
        try:
            async with live_api.ws(f"/ws/calls/{call_id}", token=OPS) as small:
                await receive(small)
                await append(db, call_id, 1, [f"line {i}" for i in range(1, 61)])
                assert await receive_seqs(ws, 60) == list(range(1, 61))
                got, resyncs = [], 0
                while len(got) < 60:
                    m = await receive(small)
                    resyncs += m["type"] == "resync"
                    if m["type"] == "final_transcript":
                        got.append(m["seq"])
                assert got == list(range(1, 61))  # complete and in order despite the overflow
                assert resyncs >= 1
            assert await stuck.get() == (-1, "")  # the stuck one holds a single resync marker
            assert stuck._queue.empty()
        finally:
            hub.queue_size = old_size
            hub.unsubscribe(stuck)


async def test_call_list_snapshot_and_updates(live_api: RunningApi, db: asyncpg.Connection) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id, status="waiting_for_agent")
    async with live_api.ws("/ws/calls", token=SUPERVISOR) as ws:
        snap = await receive(ws)
        assert snap["type"] == "snapshot"
        assert call_id in [c["call_id"] for c in snap["calls"]]
        async with db.transaction():
            await db.execute(
                "UPDATE calls SET status = 'in_progress', last_seq = 1 WHERE call_id = $1", call_id
            )
            await db.execute(
                "INSERT INTO call_events VALUES ($1, 1, 'status', now(), '{\"status\": \"in_progress\"}')",
                call_id,
            )
            await db.execute(
                "SELECT pg_notify($1, $2)",
                EVENTS_CHANNEL,
                json.dumps({"call_id": call_id, "seq": 1, "kind": "status"}),
            )
        while True:
            m = await receive(ws)
            if m["type"] == "call_updated" and m["call"]["call_id"] == call_id:
                break
        assert m["call"]["status"] == "in_progress" and m["call"]["live"] is True


def _agent_token(
    call_id: str, room_admin: bool = True, secret: str = "devsecret-devsecret-devsecret-0123456789"
) -> str:
    return (
        lkapi.AccessToken("devkey", secret)
        .with_identity("agent-sarah")
        .with_grants(
            lkapi.VideoGrants(room=room_name_for(call_id), room_admin=room_admin, room_join=True)
        )
        .with_ttl(timedelta(minutes=5))
        .to_jwt()
    )


async def test_interim_transcripts_go_live_without_being_stored(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    path = f"/internal/calls/{call_id}/interim"
    async with live_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        await receive(ws)
        r = await live_api.http(
            "POST",
            path,
            token=_agent_token(call_id),
            json_body={"speaker": "customer", "text": "I wa"},
        )
        assert r.status == 202
        m = await receive(ws)
        assert m["type"] == "interim_transcript" and m["seq"] is None
        assert m["data"]["text"] == "I wa" and m["data"]["speaker"] == "customer"
        # 1,000 emoji: 12,000 bytes as ASCII JSON escapes, past pg_notify's 8,000; published
        # as UTF-8 they are 4,000 and arrive whole
        emoji = "\U0001f600" * 1000
        r = await live_api.http(
            "POST",
            path,
            token=_agent_token(call_id),
            json_body={"speaker": "customer", "text": emoji},
        )
        assert r.status == 202, r.body
        m = await receive(ws)
        assert m["type"] == "interim_transcript" and m["data"]["text"] == emoji
        # the costliest characters (control characters: 6 bytes escaped) still fit
        r = await live_api.http(
            "POST",
            path,
            token=_agent_token(call_id),
            json_body={"speaker": "customer", "text": "\x01" * 1000},
        )
        assert r.status == 202, r.body
        m = await receive(ws)
        assert m["data"]["text"] == "\x01" * 1000
    assert await db.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", call_id) == 0
    # a customer's token (no roomAdmin), another room's token, a forged one, none: 401
    for token in (
        _agent_token(call_id, room_admin=False),
        _agent_token(new_call_id()),
        _agent_token(call_id, secret="not-the-secret-not-the-secret-00"),
        None,
    ):
        r = await live_api.http(
            "POST", path, token=token, json_body={"speaker": "customer", "text": "x"}
        )
        assert r.status == 401, r
    r = await live_api.http(
        "POST", path, token=_agent_token(call_id), json_body={"speaker": "robot", "text": "x"}
    )
    assert r.status == 422 and r.error["field"] == "speaker"
    r = await live_api.http(
        "POST",
        path,
        token=_agent_token(call_id),
        json_body={"speaker": "customer", "text": "x" * 1001},
    )
    assert r.status == 422 and r.error["field"] == "text"


async def test_websocket_authentication(live_api: RunningApi, db: asyncpg.Connection) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)

    async def close_code(path: str, **kw: Any) -> tuple[int | None, dict[str, Any]]:
        async with live_api.session.ws_connect(live_api.url + path, **kw) as ws:
            first = await receive(ws)
            msg = await ws.receive(timeout=5)
            assert msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            )
            return ws.close_code, first

    code, first = await close_code(f"/ws/calls/{call_id}")
    assert code == 4401 and first["error"]["code"] == "unauthorized"
    code, _ = await close_code(f"/ws/calls/{call_id}?token=wrong-token-wrong-token")
    assert code == 4401
    # a token in the URL is refused even when valid: proxies and access logs keep URLs
    for path in (f"/ws/calls/{call_id}?token={SUPERVISOR}", f"/ws/calls?token={SUPERVISOR}"):
        code, first = await close_code(path)
        assert code == 4401 and first["error"]["code"] == "token_in_url", first
    code, first = await close_code(
        "/ws/calls/NOT-AN-ID", headers={"Authorization": f"Bearer {SUPERVISOR}"}
    )
    assert code == 4422 and first["error"]["field"] == "call_id"
    code, first = await close_code(
        f"/ws/calls/{call_id}?after=-1", headers={"Authorization": f"Bearer {SUPERVISOR}"}
    )
    assert code == 4422 and first["error"]["field"] == "after"
    # the token as the subprotocol pair browsers can send
    async with live_api.session.ws_connect(
        f"{live_api.url}/ws/calls/{call_id}", protocols=("bearer", SUPERVISOR)
    ) as ws:
        assert ws.protocol == "bearer"
        assert (await receive(ws))["type"] == "snapshot"


async def test_an_event_that_came_whole_needs_no_read_and_a_gap_reads_the_table(
    live_api: RunningApi, db: asyncpg.Connection
) -> None:
    """`append_call_event` NOTIFYs the whole event when it fits: the hub delivers it as it came
    (proved with a notification whose row is not in the table), and reads the table only when
    the notifications leave a gap."""
    call_id = new_call_id()
    await insert_call(db, call_id)
    async with live_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await db.execute("SELECT append_call_event($1, 'l-1', 'final_transcript', now(), $2)",
                         call_id, json.dumps({"speaker": "customer", "text": "stored"}))  # fmt: skip
        assert (await receive(ws))["data"]["text"] == "stored"
        whole = {"call_id": call_id, "seq": 2, "kind": "final_transcript",
                 "at": "2030-01-01T10:00:00+00:00", "data": {"speaker": "customer", "text": "inline"}}  # fmt: skip
        await db.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, json.dumps(whole))
        got = await receive(ws)
        assert (got["seq"], got["data"]["text"], got["at"]) == (2, "inline", whole["at"])
        # 3 and 4 are in the table, 3's notification was lost: 4's shows the gap.
        for seq in (3, 4):
            await db.execute(
                "INSERT INTO call_events (call_id, seq, event_id, kind, at, data) "
                "VALUES ($1, $2, $3, 'final_transcript', now(), $4)",
                call_id, seq, f"l-{seq}", json.dumps({"speaker": "customer", "text": f"table {seq}"}),
            )  # fmt: skip
        gap = {**whole, "seq": 4, "data": {"speaker": "customer", "text": "as notified"}}
        await db.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, json.dumps(gap))
        got = [await receive(ws), await receive(ws)]
        assert [(m["seq"], m["data"]["text"]) for m in got] == [(3, "table 3"), (4, "table 4")]
