"""`GET /api/recordings?status=failed`: a recording ops gave up on says so (`given_up`), with
its reason, also when the stored segments it kept cleared the call's own error."""

from __future__ import annotations

import json

import asyncpg

from core.models import new_call_id
from tests.api.conftest import OPS, ApiStack


async def _failed_call(
    db: asyncpg.Connection, call_id: str, error: str | None, report: dict[str, str]
) -> None:
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status, recording_error) "
        "VALUES ($1, $2, 'completed', 'failed', $3)",
        call_id,
        f"call-{call_id}",
        error,
    )
    if report:
        await db.execute(
            "INSERT INTO call_events (call_id, seq, kind, at, data) "
            "VALUES ($1, 1, 'recording', now(), $2::jsonb)",
            call_id,
            json.dumps({"status": "failed", **report}),
        )


async def test_given_up_recordings_say_so(api_stack: ApiStack, db: asyncpg.Connection) -> None:
    given_up, failing = new_call_id(), new_call_id()
    # What the pipeline writes: a give-up report by a person, after which the rows of the
    # segments it had stored cleared the call's error; and a failure of its own.
    await _failed_call(
        db, given_up, None, {"run_id": "r/3", "by": "ops-7", "error": "given up by ops-7: gone"}
    )
    await _failed_call(
        db, failing, "connection reset", {"run_id": "r/2", "by": "pipeline", "error": "reset"}
    )
    r = await api_stack.api.http("GET", "/api/recordings?status=failed&limit=500", token=OPS)
    assert r.status == 200, r.body
    shown = {x["call_id"]: x for x in r.body["recordings"]}
    assert shown[given_up]["given_up"] is True
    assert shown[given_up]["recording_error"] == "given up by ops-7: gone"
    assert shown[failing]["given_up"] is False
    assert shown[failing]["recording_error"] == "connection reset"


async def test_retry_is_offered_only_where_a_pipeline_exists(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    """A recording that failed in the call itself (no egress file: no pipeline ever ran) is
    not offered Retry; it says what ops can do instead."""
    pipeline, call_level, given_up = new_call_id(), new_call_id(), new_call_id()
    await _failed_call(db, pipeline, "reset", {"run_id": "r/2", "by": "pipeline"})
    await _failed_call(db, call_level, "egress ended as EGRESS_FAILED without a file", {})
    await _failed_call(db, given_up, None, {"run_id": "r/3", "by": "ops-7", "error": "gone"})
    r = await api_stack.api.http("GET", "/api/recordings?status=failed&limit=500", token=OPS)
    assert r.status == 200, r.body
    shown = {x["call_id"]: x for x in r.body["recordings"]}
    assert shown[pipeline]["has_pipeline"] and shown[pipeline]["retryable"]
    assert "Retry" in shown[pipeline]["what_to_do"]
    assert not shown[call_level]["has_pipeline"] and not shown[call_level]["retryable"]
    assert "Nothing to retry" in shown[call_level]["what_to_do"]
    assert "EGRESS_FAILED" in shown[call_level]["recording_error"]
    assert shown[given_up]["has_pipeline"] and not shown[given_up]["retryable"]
    assert "gave up" in shown[given_up]["what_to_do"]
