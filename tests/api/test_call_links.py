"""A callback's call and the call that asked for it (`core.call_links`, migration 0020):
`GET /api/calls/{id}` and the report say "callback of" and "called back in" both ways, and the
agent's `POST /internal/calls/{id}/opening` answers the callback's reason with what the earlier
call said (its stored analysis, else the local summariser over its lines). On PostgreSQL alone:
the rows are written as `start_callback_call` and the call's workflow write them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from agent.api_client import AgentApi
from agent.dealership import Dealership
from agent.opening import fetch_opening
from agent.sarah import Sarah
from core.call_links import link_callback_call
from core.models import new_call_id
from core.settings import RecordingConsent
from tests.agent.fake_llm import ScriptedLLM
from tests.agent.test_sarah import TZ, RecordedSignals, text_session
from tests.api.conftest import SUPERVISOR, RunningApi, database_only_api
from tests.api.test_live import _agent_token, insert_call

REASON = "the Silverado test drive."
EARLIER = [
    ("assistant", "Hello! Welcome to CME Auto Sales."),
    ("customer", "I'd like to test drive the 2022 Chevrolet Silverado this week."),
    ("assistant", "I can book that. Which day suits you?"),
    ("customer", "I need to check my calendar, call me back tomorrow."),
]


@pytest.fixture(scope="module")
async def links_api(pg_dsn: str, s3: Any) -> AsyncIterator[RunningApi]:
    async with database_only_api(pg_dsn, s3) as running:
        yield running


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    yield p
    await p.close()


async def a_callback(pool: asyncpg.Pool, origin: str, attempts: int = 2) -> tuple[str, list[str]]:
    """An ended origin call with its lines, its callback and `attempts` calls placed for it."""
    callback_id = "cb" + new_call_id()
    async with pool.acquire() as conn:
        await insert_call(conn, origin, status="completed")
        for seq, (speaker, text) in enumerate(EARLIER, start=1):
            await conn.execute(
                "INSERT INTO call_events (call_id, seq, kind, at, data) "
                "VALUES ($1, $2, 'final_transcript', now(), $3::jsonb)",
                origin, seq, json.dumps({"id": f"l{seq}", "speaker": speaker, "text": text}),
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO callbacks (callback_id, phone, timezone, reason, origin_call_id, status, "
            "at, due_at) VALUES ($1, '+15550109999', 'America/Chicago', $2, $3, 'dialing', "
            "now(), now())",
            callback_id, REASON, origin,
        )  # fmt: skip
    calls = []
    for _ in range(attempts):
        call_id = new_call_id()
        await link_callback_call(pool, call_id, origin, callback_id)
        await link_callback_call(pool, call_id, origin, callback_id)  # a retried start
        async with pool.acquire() as conn:
            await insert_call(conn, call_id, status="completed")
        calls.append(call_id)
    return callback_id, calls


async def opening(api: RunningApi, call_id: str) -> Any:
    r = await api.http("POST", f"/internal/calls/{call_id}/opening", token=_agent_token(call_id),
                       json_body={})  # fmt: skip
    assert r.status == 200, r.body
    return r.body["opening"]


async def test_the_two_calls_link_both_ways_in_the_detail_and_the_report(
    links_api: RunningApi, pool: asyncpg.Pool
) -> None:
    origin = new_call_id()
    callback_id, (busy, answered) = await a_callback(pool, origin)
    r = await links_api.http("GET", f"/api/calls/{origin}", token=SUPERVISOR)
    assert r.status == 200, r.body
    back = [{"call_id": busy, "callback_id": callback_id},
            {"call_id": answered, "callback_id": callback_id}]  # fmt: skip
    assert r.body["links"] == {"callback_of": None, "called_back_in": back}
    r = await links_api.http("GET", f"/api/calls/{answered}", token=SUPERVISOR)
    assert r.body["links"] == {
        "callback_of": {"call_id": origin, "callback_id": callback_id}, "called_back_in": []}  # fmt: skip
    report = await links_api.http("GET", f"/api/calls/{answered}/report", token=SUPERVISOR)
    assert report.status == 200, report.body
    assert report.body["links"]["callback_of"] == {"call_id": origin, "callback_id": callback_id}
    report = await links_api.http("GET", f"/api/calls/{origin}/report", token=SUPERVISOR)
    assert report.body["links"]["called_back_in"] == back


async def test_a_call_no_callback_placed_has_no_links_and_no_opening(
    links_api: RunningApi, pool: asyncpg.Pool
) -> None:
    call_id = new_call_id()
    async with pool.acquire() as conn:
        await insert_call(conn, call_id, status="completed")
    r = await links_api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
    assert r.status == 200, r.body
    assert r.body["links"] == {"callback_of": None, "called_back_in": []}
    assert await opening(links_api, call_id) is None


async def test_the_opening_is_the_reason_and_what_the_earlier_call_said(
    links_api: RunningApi, pool: asyncpg.Pool
) -> None:
    origin = new_call_id()
    callback_id, [call_id] = await a_callback(pool, origin, attempts=1)
    got = await opening(links_api, call_id)
    assert got["reason"] == "the Silverado test drive"  # one sentence of Sarah's: no full stop
    assert (got["origin_call_id"], got["callback_id"]) == (origin, callback_id)
    # No analysis stored: the local summariser quotes the customer's first words of substance.
    assert "2022 Chevrolet Silverado" in got["summary"]
    assert got["earlier"][-1] == "Customer: I need to check my calendar, call me back tomorrow."
    assert len(got["earlier"]) == len(EARLIER)
    await pool.execute(
        "INSERT INTO call_analyses (call_id, status, method, document) "
        "VALUES ($1, 'done', 'llm', $2::jsonb)",
        origin, json.dumps({"summary": "Wants a Silverado test drive; will pick a day."}),
    )  # fmt: skip
    got = await opening(links_api, call_id)
    assert got["summary"] == "Wants a Silverado test drive; will pick a day."


async def test_an_erased_earlier_call_leaves_the_reason_alone(
    links_api: RunningApi, pool: asyncpg.Pool
) -> None:
    origin = new_call_id()
    callback_id, [call_id] = await a_callback(pool, origin, attempts=1)
    await pool.execute("DELETE FROM call_events WHERE call_id = $1", origin)
    await pool.execute("DELETE FROM calls WHERE call_id = $1", origin)
    await pool.execute(
        "INSERT INTO erasures (call_id, requested_by, requested_at, rows_deleted, "
        "object_deleted, executions_deleted) VALUES ($1, 'admin', now(), 1, false, 0)",
        origin,
    )
    got = await opening(links_api, call_id)
    assert (got["reason"], got["summary"], got["earlier"]) == ("the Silverado test drive", "", [])
    r = await links_api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
    assert r.body["links"]["callback_of"] == {"call_id": None, "callback_id": callback_id}


async def test_the_opening_is_only_for_the_calls_own_agent(
    links_api: RunningApi, pool: asyncpg.Pool
) -> None:
    origin = new_call_id()
    _, [call_id] = await a_callback(pool, origin, attempts=1)
    path = f"/internal/calls/{call_id}/opening"
    r = await links_api.http("POST", path, json_body={})
    assert r.status == 401, r.body
    r = await links_api.http("POST", path, token=_agent_token(origin), json_body={})
    assert r.status == 401, r.body
    r = await links_api.http("POST", path, token=_agent_token(call_id, room_admin=False),
                             json_body={})  # fmt: skip
    assert r.status == 401, r.body
    assert "Silverado" not in json.dumps(r.body)


async def test_sarah_opens_a_callback_call_with_what_the_api_answers(
    links_api: RunningApi, pool: asyncpg.Pool, pg_dsn: str
) -> None:
    """The agent's whole path up to the room: its client asks this API for the opening, and
    Sarah (a scripted model, no keys) opens with the reason, the earlier call in her prompt."""
    origin = new_call_id()
    _, [call_id] = await a_callback(pool, origin, attempts=1)
    api = AgentApi(links_api.url, lambda: _agent_token(call_id), call_id=call_id)
    dealership = Dealership(pg_dsn)
    try:
        opening = await fetch_opening(api)
        assert opening is not None and opening.origin_call_id == origin
        sarah = Sarah(call_id=call_id, dealership=dealership, signals=RecordedSignals(),
                      consent_policy=RecordingConsent.OFF, timezone=TZ, opening=opening)  # fmt: skip
        async with text_session(ScriptedLLM()) as session:
            run = await session.start(sarah, capture_run=True)
            run.expect.skip_next_event_if(type="agent_handoff")
            first = run.expect.next_event().is_message(role="assistant").event().item
    finally:
        await api.aclose()
        await dealership.aclose()
    assert "You asked us to call you back about the Silverado test drive." in first.text_content
    assert "call me back tomorrow" in sarah.instructions
