"""A call recorded in several egresses (a restart mid-call): the recording link lists every
stored segment in order, as the pipeline reported them in `recording_segments`."""

from __future__ import annotations

import asyncpg

from core.models import new_call_id, recording_object_key, room_name_for
from tests.api.conftest import OPS, ApiStack


async def test_every_segment_is_listed_in_order(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    call_id = new_call_id()
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status) "
        "VALUES ($1, $2, 'completed', 'stored')",
        call_id,
        room_name_for(call_id),
    )
    bucket = api_stack.settings.RECORDINGS_BUCKET
    # Stored out of order (the second segment's upload finished first): n decides.
    for n, size, duration in ((2, 300, 20.0), (1, 100, 10.0)):
        await db.execute(
            "INSERT INTO recording_segments (call_id, n, bucket, object_key, egress_id, "
            "size_bytes, duration_s, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            call_id, n, bucket, recording_object_key(call_id, n), f"EG_{n}", size, duration,
            f"{n}" * 64,
        )  # fmt: skip
    await db.execute(  # `recordings` keeps the first segment (what callers before segments read)
        "INSERT INTO recordings (call_id, bucket, object_key, egress_id, size_bytes, duration_s, "
        "sha256) VALUES ($1, $2, $3, 'EG_1', 100, 10.0, $4)",
        call_id, bucket, recording_object_key(call_id, 1), "1" * 64,
    )  # fmt: skip
    r = await api_stack.api.http("GET", f"/api/calls/{call_id}/recording", token=OPS)
    assert r.status == 200, r.body
    segs = r.body["segments"]
    assert [s["index"] for s in segs] == [0, 1]
    assert [s["sha256"][0] for s in segs] == ["1", "2"]
    assert f"/{call_id}/1.ogg" in segs[0]["url"] and f"/{call_id}/2.ogg" in segs[1]["url"]
    assert (r.body["size_bytes"], r.body["duration_s"]) == (400, 30.0)
    assert r.body["url"] == segs[0]["url"]
