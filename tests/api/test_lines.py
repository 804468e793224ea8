"""`POST /internal/calls/{call_id}/lines`: the agent's final lines stored once each, in order,
seen live by the dashboard through NOTIFY, keyword alerts once, bad input refused whole.

Needs only PostgreSQL (the API without Temporal): the line path no longer goes through the
call's workflow.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core.models import new_call_id
from devstack.services import free_port
from tests.api.conftest import SUPERVISOR, RunningApi, api_settings, database_only_api, run_api
from tests.api.test_live import _agent_token, insert_call, receive


@pytest.fixture(scope="module")
async def lines_api(pg_dsn: str, s3: Any) -> AsyncIterator[RunningApi]:
    async with database_only_api(pg_dsn, s3, KEYWORD_ALERTS="manager,lawyer") as running:
        yield running


def line(i: int, text: str | None = None, speaker: str = "customer") -> dict[str, Any]:
    return {"id": f"line-{i}", "speaker": speaker, "text": text or f"line number {i}",
            "confidence": 0.9, "started_at": "2026-01-01T10:00:00+00:00",
            "ended_at": "2026-01-01T10:00:02+00:00"}  # fmt: skip


async def post(api: RunningApi, call_id: str, lines: list[dict[str, Any]], **kw: Any) -> Any:
    token = kw.pop("token", _agent_token(call_id))
    return await api.http(
        "POST", f"/internal/calls/{call_id}/lines", token=token, json_body={"lines": lines}, **kw
    )


async def post_raw(api: RunningApi, call_id: str, raw: str) -> Any:
    """A body as JSON text (JSON can spell what Python's encoder would not: a NUL, a lone
    surrogate), with the call's agent token."""
    return await api.http(
        "POST",
        f"/internal/calls/{call_id}/lines",
        token=_agent_token(call_id),
        data=raw,
        headers={"Content-Type": "application/json"},
    )


async def events(db: asyncpg.Connection, call_id: str) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT kind, event_id FROM call_events WHERE call_id = $1 ORDER BY seq", call_id
    )
    return [(r["kind"], r["event_id"]) for r in rows]


async def test_lines_are_stored_once_and_reach_the_dashboard_once(
    lines_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    batch = [line(1, "hello"), line(2, "Hi, I'm Sarah", "assistant"), line(3, "get me a Manager")]
    async with lines_api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        r = await post(lines_api, call_id, batch)
        assert r.status == 200, r.body
        assert r.body == {"stored": [{"id": "line-1", "seq": 1}, {"id": "line-2", "seq": 2},
                                     {"id": "line-3", "seq": 3}]}  # fmt: skip
        # the agent did not hear the answer and sends again, with one new line
        again = await post(lines_api, call_id, [*batch, line(4, "a lawyer? no")])
        assert again.status == 200, again.body
        assert [s["seq"] for s in again.body["stored"]] == [None, None, None, 5]
        got: list[dict[str, Any]] = []
        while len(got) < 6:
            got.append(await receive(ws))
        with pytest.raises(asyncio.TimeoutError):
            extra = await receive(ws, timeout=1.0)
            raise AssertionError(f"a message more than once: {extra}")
    kinds = [(m["type"], m["seq"]) for m in got]
    assert kinds == [("final_transcript", 1), ("final_transcript", 2), ("final_transcript", 3),
                     ("keyword_alert", 4), ("final_transcript", 5), ("keyword_alert", 6)]  # fmt: skip
    assert got[0]["data"]["text"] == "hello" and got[0]["data"]["id"] == "line-1"
    assert got[3]["data"]["keywords"] == ["manager"] and got[3]["data"]["line_seq"] == 3
    assert await events(db, call_id) == [
        ("final_transcript", "line-1"), ("final_transcript", "line-2"),
        ("final_transcript", "line-3"), ("keyword_alert", "kw:line-3"),
        ("final_transcript", "line-4"), ("keyword_alert", "kw:line-4"),
    ]  # fmt: skip
    row = await db.fetchrow(
        "SELECT line_count, keyword_alerts, last_seq FROM calls WHERE call_id = $1", call_id
    )
    assert tuple(row) == (4, 2, 6)
    t = await lines_api.http("GET", f"/api/calls/{call_id}/transcript", token=SUPERVISOR)
    assert t.status == 200, t.body
    assert [x["text"] for x in t.body["lines"]] == ["hello", "Hi, I'm Sarah",
                                                    "get me a Manager", "a lawyer? no"]  # fmt: skip
    # the assistant naming a keyword raises nothing: alerts are about the customer
    r = await post(lines_api, call_id, [line(5, "let me get the manager", "assistant")])
    assert r.body["stored"] == [{"id": "line-5", "seq": 7}]
    assert (await events(db, call_id))[-1] == ("final_transcript", "line-5")


async def test_text_postgresql_cannot_hold_is_stored_cleaned(
    lines_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    # JSON can spell a lone surrogate and a NUL; PostgreSQL can hold neither
    raw = ('{"lines": [{"id": "l-1", "speaker": "customer", "text": "half \\ud83d emoji"},'
           ' {"id": "l-2", "speaker": "customer", "text": "nul\\u0000here"}]}')  # fmt: skip
    r = await post_raw(lines_api, call_id, raw)
    assert r.status == 200, r.body
    assert [s["seq"] for s in r.body["stored"]] == [1, 2]
    texts = await db.fetch(
        "SELECT data->>'text' AS t FROM call_events WHERE call_id = $1 ORDER BY seq", call_id
    )
    assert [x["t"] for x in texts] == ["half \ufffd emoji", "nul\ufffdhere"]


async def test_only_the_calls_agent_may_send_lines(
    lines_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await insert_call(db, call_id)
    for token in (
        _agent_token(call_id, room_admin=False),  # a customer's token
        _agent_token(new_call_id()),  # another call's agent
        _agent_token(call_id, secret="not-the-secret-not-the-secret-00"),  # forged
        SUPERVISOR,  # not a LiveKit token
        None,
    ):
        r = await post(lines_api, call_id, [line(1)], token=token)
        assert r.status == 401, r
        assert r.error["code"] == "unauthorized"
    assert await events(db, call_id) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lines": [line(1), {**line(2), "speaker": "robot"}]}, "lines.1.speaker"),
        ({"lines": [{**line(1), "id": "kw:line-0"}]}, "lines.0.id"),  # an alert's id
        ({"lines": [{**line(1), "id": ""}]}, "lines.0.id"),
        ({"lines": [{**line(1), "text": ""}]}, "lines.0.text"),
        ({"lines": [{**line(1), "text": "x" * 10_001}]}, "lines.0.text"),
        ({"lines": [{**line(1), "confidence": 1.5}]}, "lines.0.confidence"),
        ({"lines": [{**line(1), "started_at": "9" * 65}]}, "lines.0.started_at"),
        ({"lines": [{**line(1), "extra": 1}]}, "lines.0.extra"),
        ({"lines": [{k: v for k, v in line(1).items() if k != "text"}]}, "lines.0.text"),
        ({"lines": [line(i) for i in range(51)]}, "lines"),
        ({"lines": []}, "lines"),
        ({}, "lines"),
        ({"lines": "hello"}, "lines"),
    ],
)
async def test_bad_lines_are_refused_whole_naming_the_field(
    lines_api: RunningApi, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    call_id = new_call_id()
    r = await lines_api.http(
        "POST", f"/internal/calls/{call_id}/lines", token=_agent_token(call_id), json_body=body
    )
    assert r.status == 422, r
    assert r.error["field"] == field, r.error
    assert await events(db, call_id) == []


async def test_a_path_that_is_not_a_call_id_is_422(lines_api: RunningApi) -> None:
    r = await lines_api.http(
        "POST",
        "/internal/calls/NOT-A-CALL/lines",
        token=_agent_token("NOT-A-CALL"),
        json_body={"lines": [line(1)]},
    )
    assert r.status == 422 and r.error["field"] == "call_id"


async def test_lines_of_an_erased_call_are_not_stored_again(
    lines_api: RunningApi, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await db.execute(
        "INSERT INTO erasures (call_id, requested_by, requested_at, rows_deleted, "
        "object_deleted, executions_deleted) VALUES ($1, 'admin', now(), 3, true, 1)",
        call_id,
    )
    r = await post(lines_api, call_id, [line(1)])
    assert r.status == 410 and r.error["code"] == "call_erased", r
    assert await events(db, call_id) == []


async def test_database_down_is_503_for_the_agent_to_retry(s3: Any) -> None:
    closed = f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"
    settings = api_settings(pg_dsn=closed, s3=s3, temporal_address="127.0.0.1:1", livekit=None)
    async with run_api(settings, wait_temporal=False) as api:
        call_id = new_call_id()
        r = await post(api, call_id, [line(1)])
        assert r.status == 503, r
        assert r.error["code"] == "database_unavailable"
        assert r.headers.get("Retry-After")


def random_text(rnd: random.Random) -> str:
    """Any code points: NUL, controls, lone surrogates, astral ones, at any length."""
    pools = [(0, 0x20), (0x20, 0x7F), (0xD800, 0xE000), (0x1F600, 0x1F650), (0x80, 0x3000)]
    out = []
    for _ in range(rnd.choice([1, 3, 40, 2000])):
        lo, hi = rnd.choice(pools)
        out.append(chr(rnd.randrange(lo, hi)))
    return "".join(out)


async def test_random_lines_are_stored_or_refused_never_a_server_error(
    lines_api: RunningApi, db: asyncpg.Connection
) -> None:
    rnd = random.Random(20261207)
    answers = []
    for n in range(40):
        call_id = new_call_id()
        lines = [{"id": f"r{n}-{k}", "speaker": rnd.choice(["customer", "assistant", "supervisor"]),
                  "text": random_text(rnd), "confidence": rnd.choice([0.0, 0.5, 1, 1.0]),
                  "started_at": rnd.choice(["", "2026-01-01T00:00:00Z", "yesterday"]),
                  "interrupted": rnd.random() < 0.5}
                 for k in range(rnd.randint(1, 5))]  # fmt: skip
        raw = json.dumps({"lines": lines})  # ASCII escapes: lone surrogates spelled as JSON can
        r = await post_raw(lines_api, call_id, raw)
        assert r.status in (200, 422), (r, lines)
        answers.append(r.status)
        stored = await db.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", call_id)
        if r.status == 200:
            assert [s["id"] for s in r.body["stored"]] == [x["id"] for x in lines]
            assert stored >= len(lines)
        else:
            assert stored == 0
    assert answers.count(200) > 30, answers  # what any STT could say is stored
