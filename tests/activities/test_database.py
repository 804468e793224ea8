"""Database activities on a real PostgreSQL: natural keys, ordering, NOTIFY, never backwards."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from activities import types as act
from activities.database import DatabaseActivities
from core import eventlog
from core import models as m
from core.notify import EVENTS_CHANNEL
from tests.activities.conftest import Run, app_error

T0 = "2030-01-01T10:00:00+00:00"


@pytest.fixture
def dba(pool: asyncpg.Pool) -> DatabaseActivities:
    return DatabaseActivities(pool)


class Listener:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def __call__(self, _c: Any, _pid: int, _channel: str, payload: str) -> None:
        self.got.append(json.loads(payload))
        self.changed.set()

    async def wait(self, n: int, call_id: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(5):
            while len(self.of(call_id)) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.of(call_id)

    def of(self, call_id: str) -> list[dict[str, Any]]:
        return [n for n in self.got if n["call_id"] == call_id]


@pytest.fixture
async def listener(pg_dsn: str) -> AsyncIterator[Listener]:
    conn = await asyncpg.connect(pg_dsn)
    lis = Listener()
    await conn.add_listener(EVENTS_CHANNEL, lis)
    yield lis
    await conn.close()


def row(call_id: str, status: str = "in_progress", version: int = 0, **kw: Any) -> act.CallRow:
    return act.CallRow(
        call_id=call_id,
        room_name=m.room_name_for(call_id),
        customer_name=kw.pop("customer_name", "Ada"),
        status=status,
        recording_status=kw.pop("recording_status", "none"),
        created_at=T0,
        row_version=version,
        **kw,
    )


def ev(n: int, kind: str = "status", **data: Any) -> act.CallEvent:
    """The workflow's n-th event (its id `wf:<n>`: the database allocates the seq)."""
    return act.CallEvent(
        n, kind, f"2030-01-01T10:00:{n:02d}+00:00", data or {"text": f"e{n}"}, id=f"wf:{n}"
    )


async def test_a_retried_batch_inserts_once_and_notifies_once(
    dba: DatabaseActivities, pool: asyncpg.Pool, listener: Listener
) -> None:
    call_id = m.new_call_id()
    batch = act.EventBatch(call_id, [ev(1, status="waiting_for_agent"), ev(2, "recording"),
                                     ev(3, status="in_progress")], row(call_id, version=3))  # fmt: skip
    assert (await Run()(dba.append_call_events, batch)).inserted == 3
    again = await Run()(dba.append_call_events, batch)
    assert (again.inserted, again.duplicates) == (0, 3)
    rows = await pool.fetch(
        "SELECT seq, event_id, kind, data FROM call_events WHERE call_id = $1 ORDER BY seq", call_id
    )
    assert [(r["seq"], r["event_id"], r["kind"]) for r in rows] == [
        (1, "wf:1", "status"), (2, "wf:2", "recording"), (3, "wf:3", "status")
    ]  # fmt: skip
    assert json.loads(rows[1]["data"]) == {"text": "e2"}
    notes = await listener.wait(3, call_id)
    assert [(n["call_id"], n["seq"], n["kind"]) for n in notes] == [
        (call_id, 1, "status"), (call_id, 2, "recording"), (call_id, 3, "status")
    ]  # fmt: skip
    assert notes[1]["data"] == {"text": "e2"}  # the whole event: the fan-out reads no table
    await asyncio.sleep(0.2)
    assert len(listener.of(call_id)) == 3  # the retried batch announced nothing


async def test_two_writers_share_one_sequence_and_lines_are_counted(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    """The API stores lines while the workflow's activity stores its events, side by side:
    every event gets the next seq (no gap, no clash), the row counts the lines and keyword
    alerts the log holds, and a row written after the lines starts from what the log holds."""
    call_id = m.new_call_id()
    line = m.TranscriptLine("line-1", "customer", "get me a manager")

    async def lines(k: int) -> None:
        for i in range(k):
            await eventlog.store_line(pool, call_id, dataclasses.replace(line, id=f"l{i}"),
                                      ["manager"])  # fmt: skip

    await lines(3)  # before the workflow's first write: no row yet
    await asyncio.gather(
        lines(20),
        *(Run()(dba.append_call_events,
                act.EventBatch(call_id, [ev(n)], row(call_id, version=n))) for n in range(1, 11)),
    )  # fmt: skip
    seqs = [r["seq"] for r in await pool.fetch(
        "SELECT seq FROM call_events WHERE call_id = $1 ORDER BY seq", call_id)]  # fmt: skip
    assert seqs == list(range(1, 20 * 2 + 10 + 1))  # 20 lines, 20 alerts, 10 events
    got = await pool.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)
    assert (got["line_count"], got["keyword_alerts"], got["last_seq"]) == (20, 20, 50)
    assert got["row_version"] == 10


async def test_an_event_postgresql_refuses_is_dropped_alone(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    """An event that can never be stored (an id too large for PostgreSQL's index, a number
    JSON cannot write) costs only itself: the events around it are stored and the result
    names each. (A NaN and a lone surrogate are cleaned, not refused.)"""
    call_id = m.new_call_id()
    huge_id = act.CallEvent(2, "status", T0, {}, id=secrets.token_hex(8000))
    batch = act.EventBatch(call_id, [
        ev(1, "agent_metrics", figure=float("nan")),
        huge_id,
        ev(3, "status", note="lone \ud800 surrogate"),
        ev(4, "agent_metrics", figure=10**5000),
    ], row(call_id, version=4))  # fmt: skip
    result = await Run()(dba.append_call_events, batch)
    assert result.inserted == 2 and len(result.refused) == 2
    assert "ProgramLimitExceeded" in result.refused[0]
    assert result.refused[1].startswith("wf:4: ValueError")
    rows = await pool.fetch(
        "SELECT event_id, data FROM call_events WHERE call_id = $1 ORDER BY seq", call_id
    )
    assert [r["event_id"] for r in rows] == ["wf:1", "wf:3"]
    assert json.loads(rows[0]["data"]) == {"figure": None}
    assert json.loads(rows[1]["data"]) == {"note": "lone \ufffd surrogate"}
    assert await pool.fetchval("SELECT status FROM calls WHERE call_id = $1", call_id)


async def test_a_line_is_stored_with_its_alert_and_figures_once(
    pool: asyncpg.Pool,
) -> None:
    """`store_line` stores a line, its keyword alert (naming the line's seq) and its turn's
    figures in one statement; a resend stores nothing; figures PostgreSQL cannot take cost
    only themselves (the line is stored event by event then); an erased call stores nothing."""
    call_id = m.new_call_id()
    await eventlog.store_line(pool, call_id, m.TranscriptLine("l0", "assistant", "hello"), [])
    line = m.TranscriptLine("l1", "customer", "get me a manager")
    line.metrics = m.AgentMetrics("t1", 0.3, 0.4, 0.5)
    done = await eventlog.store_line(pool, call_id, line, ["manager"])
    assert (done.seq, done.keyword_alert_seq, done.keywords) == (2, 3, ["manager"])
    again = await eventlog.store_line(pool, call_id, line, ["manager"])
    assert again.seq is None
    rows = await pool.fetch(
        "SELECT seq, event_id, kind, data FROM call_events WHERE call_id = $1 ORDER BY seq",
        call_id,
    )
    assert [(r["seq"], r["event_id"], r["kind"]) for r in rows] == [
        (1, "l0", "final_transcript"),
        (2, "l1", "final_transcript"),
        (3, "kw:l1", "keyword_alert"),
        (4, "m:l1", "agent_metrics"),
    ]
    assert json.loads(rows[2]["data"])["line_seq"] == 2
    odd = m.TranscriptLine("l2", "assistant", "fine")
    odd.metrics = m.AgentMetrics("t2", 10**5000)  # JSON cannot write it: refused alone
    assert (await eventlog.store_line(pool, call_id, odd, [])).seq == 5
    kinds = await pool.fetch("SELECT event_id FROM call_events WHERE call_id = $1 AND seq > 4",
                             call_id)  # fmt: skip
    assert [r["event_id"] for r in kinds] == ["l2"]
    await pool.execute(
        "INSERT INTO erasures VALUES ($1, 'test', now(), now(), 0, false, 0)", call_id
    )
    with pytest.raises(eventlog.CallErased):
        await eventlog.store_line(pool, call_id, m.TranscriptLine("l3", "customer", "hi"), [])


async def test_a_notification_too_large_carries_the_key_alone(
    dba: DatabaseActivities, listener: Listener
) -> None:
    call_id = m.new_call_id()
    big = act.EventBatch(call_id, [ev(1, "agent_alert", detail="x" * 9000), ev(2)])
    assert (await Run()(dba.append_call_events, big)).inserted == 2
    notes = await listener.wait(2, call_id)
    assert notes[0] == {"call_id": call_id, "seq": 1, "kind": "agent_alert"}
    assert notes[1]["data"] == {"text": "e2"} and notes[1]["at"].startswith("2030-01-01T10:00:02")


async def test_the_call_row_never_goes_backwards(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    call_id = m.new_call_id()
    newer = row(call_id, "completed", version=9, ended_at=T0, end_reason="customer_left",
                egress_id="EG_1", recording_status="stored")  # fmt: skip
    older = row(call_id, "in_progress", version=5, recording_status="recording")
    await Run()(dba.append_call_events, act.EventBatch(call_id, [ev(9)], newer))
    await Run()(dba.append_call_events, act.EventBatch(call_id, [ev(5)], older))  # late
    got = await pool.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)
    assert got["status"] == "completed" and got["row_version"] == 9
    assert got["recording_status"] == "stored" and got["egress_id"] == "EG_1"
    assert got["end_reason"] == "customer_left" and got["ended_at"] is not None
    # A finished call never becomes active again, even if a row claims to be newer.
    await Run()(dba.append_call_events, act.EventBatch(call_id, [], row(call_id, version=10)))
    assert (
        await pool.fetchval("SELECT status FROM calls WHERE call_id = $1", call_id) == "completed"
    )
    # A newer row of a live call does update.
    live = m.new_call_id()
    for n, status in [(1, "waiting_for_agent"), (2, "in_progress")]:
        await Run()(dba.append_call_events,
                    act.EventBatch(live, [ev(n)], row(live, status, version=n)))  # fmt: skip
    got = await pool.fetchrow(
        "SELECT status, row_version, created_at FROM calls WHERE call_id = $1", live
    )
    assert (got["status"], got["row_version"]) == ("in_progress", 2)
    assert got["created_at"].isoformat() == T0


async def test_invalid_input_is_not_retried(dba: DatabaseActivities, pool: asyncpg.Pool) -> None:
    call_id = m.new_call_id()
    err = await app_error(Run()(dba.append_call_events, act.EventBatch("NOT A CALL", [ev(1)])))
    assert err.type == act.ERR_INVALID_INPUT and err.non_retryable
    other = act.EventBatch(call_id, [ev(1)], row(m.new_call_id()))
    assert (await app_error(Run()(dba.append_call_events, other))).type == act.ERR_INVALID_INPUT
    # An unreadable time is not worth an event: it is stored at the time of the write.
    bad_time = act.EventBatch(call_id, [act.CallEvent(1, "status", "yesterday-ish", {}, "wf:1")])
    assert (await Run()(dba.append_call_events, bad_time)).inserted == 1


async def test_an_unreachable_database_is_retryable() -> None:
    from devstack.services import free_port

    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    dead = await asyncpg.create_pool(dsn, min_size=0, max_size=1)  # connects on first use
    try:
        batch = act.EventBatch(m.new_call_id(), [ev(1)])
        err = await app_error(Run()(DatabaseActivities(dead).append_call_events, batch))
    finally:
        await dead.close()
    assert err.type == act.ERR_DATABASE_UNAVAILABLE and not err.non_retryable


def stored(call_id: str, **kw: Any) -> act.RecordingRow:
    values: dict[str, Any] = dict(
        call_id=call_id, status="stored", bucket="recordings",
        object_key=m.recording_object_key(call_id), egress_id="EG_1", size_bytes=1234,
        duration_s=61.5, sha256="ab" * 32, at=T0,
    )  # fmt: skip
    values.update(kw)
    return act.RecordingRow(**values)


async def test_record_recording_upserts_the_stored_recording(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    call_id = m.new_call_id()
    await Run()(dba.append_call_events, act.EventBatch(call_id, [ev(1)], row(call_id, version=1)))
    await Run()(dba.record_recording, act.RecordingRow(call_id, "failed", error="egress lost"))
    assert (
        await pool.fetchval("SELECT recording_error FROM calls WHERE call_id = $1", call_id)
        == "egress lost"
    )
    assert await pool.fetchval("SELECT count(*) FROM recordings WHERE call_id = $1", call_id) == 0
    await Run()(dba.record_recording, stored(call_id))
    await Run()(dba.record_recording, stored(call_id, at="2030-02-02T00:00:00+00:00"))  # retried
    rec = await pool.fetchrow("SELECT * FROM recordings WHERE call_id = $1", call_id)
    assert (rec["size_bytes"], rec["duration_s"], rec["sha256"]) == (1234, 61.5, "ab" * 32)
    assert rec["stored_at"].isoformat() == T0  # the same bytes keep their first time
    assert (
        await pool.fetchval("SELECT recording_error FROM calls WHERE call_id = $1", call_id) is None
    )
    # A failure reported after the store is stale and changes nothing.
    await Run()(dba.record_recording, act.RecordingRow(call_id, "failed", error="late"))
    assert (
        await pool.fetchval("SELECT recording_error FROM calls WHERE call_id = $1", call_id) is None
    )
    # No event is appended outside an ops retry (the call's workflow reports it).
    assert await pool.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", call_id) == 1
    bad = act.RecordingRow(call_id, "recording")
    assert (await app_error(Run()(dba.record_recording, bad))).type == act.ERR_INVALID_INPUT


async def test_release_2_reports_uploading_after_a_failure_and_every_segment(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    """A retry, a reset or the first report: the call's status is right at once; segments rows
    in order; an `uploading` the call already said appends nothing."""
    call_id = m.new_call_id()
    final = row(call_id, "completed", version=3, recording_status="uploading")
    await Run()(dba.append_call_events, act.EventBatch(call_id, [ev(3, "recording")], final))
    up = act.RecordingRow(call_id, "uploading", append_event_for_run="r1/1", at=T0)
    await Run()(dba.record_recording, up)  # the call said uploading already: no event
    failed = act.RecordingRow(call_id, "failed", error="503", append_event_for_run="r1/2", at=T0)
    await Run()(dba.record_recording, failed)
    again = act.RecordingRow(call_id, "uploading", append_event_for_run="r1/3", at=T0, by="ops-1")
    await Run()(dba.record_recording, again)
    status = "SELECT recording_status FROM calls WHERE call_id = $1"
    assert await pool.fetchval(status, call_id) == "uploading"
    segs = [{"n": n, "key": m.recording_object_key(call_id, n), "size": 10 * n,
             "sha256": "cd" * 32, "duration_s": 1.5, "egress_id": f"EG_{n}"} for n in (1, 2)]  # fmt: skip
    ok = stored(call_id, append_event_for_run="r1/4")
    ok.segments = segs
    await Run()(dba.record_recording, ok)
    assert await pool.fetchval(status, call_id) == "stored"
    rows = await pool.fetch(
        "SELECT n, object_key, size_bytes FROM recording_segments WHERE call_id = $1 ORDER BY n",
        call_id,
    )
    assert [(r["n"], r["object_key"]) for r in rows] == [(1, segs[0]["key"]), (2, segs[1]["key"])]
    events = await pool.fetch(
        "SELECT data FROM call_events WHERE call_id = $1 AND seq > 1 ORDER BY seq", call_id
    )
    data = [json.loads(e["data"]) for e in events]
    assert [d["status"] for d in data] == ["failed", "uploading", "stored"]
    assert data[1]["by"] == "ops-1" and data[0]["by"] == "pipeline"
    assert [s["n"] for s in data[2]["segments"]] == [1, 2]


async def test_an_ops_retry_appends_one_event_per_run(
    dba: DatabaseActivities, pool: asyncpg.Pool, listener: Listener
) -> None:
    call_id = m.new_call_id()
    final = row(call_id, "completed", version=7, recording_status="failed")
    await Run()(dba.append_call_events, act.EventBatch(call_id, [ev(7, "recording")], final))
    first = act.RecordingRow(
        call_id, "failed", error="source 503", append_event_for_run="run-1", at=T0
    )
    await Run()(dba.record_recording, first)
    await Run()(dba.record_recording, first)  # retried: still one event for run-1
    ok = stored(call_id, append_event_for_run="run-2")
    await Run()(dba.record_recording, ok)
    await Run()(dba.record_recording, ok)
    events = await pool.fetch(
        "SELECT seq, kind, data FROM call_events WHERE call_id = $1 ORDER BY seq", call_id
    )
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "recording"), (2, "recording"),
                                                       (3, "recording")]  # fmt: skip
    assert json.loads(events[1]["data"])["status"] == "failed"
    last = json.loads(events[2]["data"])
    assert last["status"] == "stored" and last["sha256"] == "ab" * 32 and last["run_id"] == "run-2"
    call = await pool.fetchrow(
        "SELECT recording_status, last_seq FROM calls WHERE call_id = $1", call_id
    )
    assert (call["recording_status"], call["last_seq"]) == ("stored", 3)
    notes = await listener.wait(3, call_id)
    assert [n["seq"] for n in notes] == [1, 2, 3]


async def test_nul_characters_do_not_block_the_log(
    dba: DatabaseActivities, pool: asyncpg.Pool
) -> None:
    call_id = m.new_call_id()
    batch = act.EventBatch(
        call_id, [ev(1, text="a\x00b", nested=["\x00"])], row(call_id, customer_name="Ad\x00a")
    )
    assert (await Run()(dba.append_call_events, batch)).inserted == 1
    data = json.loads(
        await pool.fetchval("SELECT data FROM call_events WHERE call_id = $1", call_id)
    )
    assert data == {"text": "a\ufffdb", "nested": ["\ufffd"]}
    name = await pool.fetchval("SELECT customer_name FROM calls WHERE call_id = $1", call_id)
    assert name == "Ad\ufffda"
