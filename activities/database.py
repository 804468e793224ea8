"""PostgreSQL activities: the call's event log, its row in `calls`, its recording.

Every write has a natural key: an event is `(call_id, seq)` and is inserted once (a retried
batch inserts nothing and notifies nothing); the `calls` row is upserted only by a batch at
least as new as what it holds (`last_seq`), and a finished call never becomes active again.
Each inserted event is announced with `NOTIFY call_events, '{"call_id","seq","kind"}'` in the
same transaction (so listeners see it only once it is committed); `api/domain/fanout.py` LISTENs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import types as act
from core import events as ev
from core import models as m
from core.log import get_logger
from core.notify import EVENTS_CHANNEL, event_notification

log = get_logger("activities.database")

T = TypeVar("T")

_ACTIVE = [s.value for s in m.CallStatus if s.is_active]
_FINISHED = [s.value for s in m.CallStatus if not s.is_active]

_INSERT_EVENTS = """
INSERT INTO call_events (call_id, seq, kind, at, data)
SELECT $1, e.seq, e.kind, COALESCE(NULLIF(e.at, '')::timestamptz, now()), e.data::jsonb
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS e(seq, kind, at, data)
ON CONFLICT (call_id, seq) DO NOTHING
RETURNING seq, kind
"""

# A call's lines are found by its primary key's prefix (call_id); only rare lines are asked.
_STORED_LINE_IDS = """
SELECT DISTINCT data->>'id' AS id FROM call_events
WHERE call_id = $1 AND kind = 'final_transcript' AND data->>'id' = ANY($2::text[])
"""

_UPSERT_CALL = """
INSERT INTO calls AS c (call_id, room_name, customer_name, status, recording_status, created_at,
    agent_joined_at, ended_at, end_reason, silence_alerts, keyword_alerts, last_seq, line_count,
    egress_id, updated_at)
VALUES ($1, $2, $3, $4, $5, COALESCE(NULLIF($6::text, '')::timestamptz, now()),
    NULLIF($7::text, '')::timestamptz, NULLIF($8::text, '')::timestamptz, NULLIF($9::text, ''),
    $10, $11, $12, $13, NULLIF($14::text, ''), now())
ON CONFLICT (call_id) DO UPDATE SET
    room_name = EXCLUDED.room_name,
    customer_name = EXCLUDED.customer_name,
    status = EXCLUDED.status,
    recording_status = EXCLUDED.recording_status,
    created_at = EXCLUDED.created_at,
    agent_joined_at = EXCLUDED.agent_joined_at,
    ended_at = EXCLUDED.ended_at,
    end_reason = EXCLUDED.end_reason,
    silence_alerts = EXCLUDED.silence_alerts,
    keyword_alerts = EXCLUDED.keyword_alerts,
    last_seq = EXCLUDED.last_seq,
    line_count = EXCLUDED.line_count,
    egress_id = EXCLUDED.egress_id,
    updated_at = now()
WHERE c.last_seq <= EXCLUDED.last_seq
  AND NOT (c.status = ANY($15::text[]) AND EXCLUDED.status = ANY($16::text[]))
"""

_RECORDING_REPORTS = (
    m.RecordingStatus.STORED,
    m.RecordingStatus.FAILED,
    m.RecordingStatus.UPLOADING,
)

_UPSERT_SEGMENT = """
INSERT INTO recording_segments AS s (call_id, n, bucket, object_key, egress_id, size_bytes,
    duration_s, sha256, stored_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE(NULLIF($9::text, '')::timestamptz, now()))
ON CONFLICT (call_id, n) DO UPDATE SET
    bucket = EXCLUDED.bucket, object_key = EXCLUDED.object_key, egress_id = EXCLUDED.egress_id,
    size_bytes = EXCLUDED.size_bytes, duration_s = EXCLUDED.duration_s, sha256 = EXCLUDED.sha256
"""

_UPSERT_RECORDING = """
INSERT INTO recordings AS r (call_id, bucket, object_key, egress_id, size_bytes, duration_s,
    sha256, incomplete, stored_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE(NULLIF($9::text, '')::timestamptz, now()))
ON CONFLICT (call_id) DO UPDATE SET
    bucket = EXCLUDED.bucket,
    object_key = EXCLUDED.object_key,
    egress_id = EXCLUDED.egress_id,
    size_bytes = EXCLUDED.size_bytes,
    duration_s = EXCLUDED.duration_s,
    sha256 = EXCLUDED.sha256,
    incomplete = EXCLUDED.incomplete,
    -- the same bytes reported again keep the time they were first stored
    stored_at = CASE WHEN r.sha256 = EXCLUDED.sha256 THEN r.stored_at ELSE EXCLUDED.stored_at END
"""


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=act.ERR_INVALID_INPUT, non_retryable=True)


async def _guard(what: str, call_id: str, op: Awaitable[T]) -> T:
    """Data PostgreSQL refuses is InvalidInput (non-retryable); anything else is an outage."""
    try:
        return await op
    except asyncpg.DataError as exc:
        raise _invalid(f"{what} for call {call_id}: {type(exc).__name__}: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("database_unavailable", call_id=call_id, op=what, error=type(exc).__name__)
        raise ApplicationError(
            f"{what} for call {call_id}: database unavailable ({type(exc).__name__}: {exc})",
            type=act.ERR_DATABASE_UNAVAILABLE,
        ) from exc


def _text(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: replace it (a customer's or an STT's stray
    control character must not block the call's log)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


class DatabaseActivities:
    """Built once per worker with an asyncpg pool (any jsonb codec on it does not matter)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name=act.APPEND_CALL_EVENTS)
    async def append_call_events(self, batch: act.EventBatch) -> act.AppendResult:
        """Insert the batch's events (once each), upsert the call's row, NOTIFY each new event."""
        if not m.is_call_id(batch.call_id):
            raise _invalid(f"append_call_events: {batch.call_id!r} is not a call id")
        if batch.call is not None and batch.call.call_id != batch.call_id:
            raise _invalid("append_call_events: the call row belongs to another call")
        if any(e.seq <= 0 for e in batch.events):
            raise _invalid(f"append_call_events for call {batch.call_id}: seq must be positive")
        inserted = await _guard("append_call_events", batch.call_id, self._append(batch))
        if inserted:
            log.debug("call_events_appended", call_id=batch.call_id, inserted=inserted)
        return act.AppendResult(inserted=inserted)

    async def _append(self, batch: act.EventBatch) -> int:
        events = sorted(batch.events, key=lambda e: e.seq)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _INSERT_EVENTS,
                batch.call_id,
                [e.seq for e in events],
                [_text(e.kind) for e in events],
                [_text(e.at) for e in events],
                [json.dumps(_text(e.data)) for e in events],
            )
            if batch.call is not None:
                await self._upsert_call(conn, batch.call)
            new = sorted((r["seq"], r["kind"]) for r in rows)
            if new:
                await conn.execute(
                    "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
                    EVENTS_CHANNEL,
                    [event_notification(batch.call_id, seq, kind) for seq, kind in new],
                )
        return len(new)

    @activity.defn(name=act.STORED_LINE_IDS)
    async def stored_line_ids(self, query: act.LineIdsQuery) -> list[str]:
        """The ids among `query.ids` of final transcript lines already in the call's event log
        (the workflow asks only for a line that may repeat one it no longer remembers)."""
        if not m.is_call_id(query.call_id):
            raise _invalid(f"stored_line_ids: {query.call_id!r} is not a call id")
        if not query.ids:
            return []
        rows = await _guard(
            "stored_line_ids",
            query.call_id,
            self.pool.fetch(_STORED_LINE_IDS, query.call_id, [_text(i) for i in query.ids]),
        )
        return sorted({r["id"] for r in rows})

    @staticmethod
    async def _upsert_call(conn: Any, row: act.CallRow) -> None:
        row = act.CallRow(**_text(dataclasses.asdict(row)))
        await conn.execute(
            _UPSERT_CALL,
            row.call_id,
            row.room_name,
            row.customer_name,
            row.status,
            row.recording_status,
            row.created_at,
            row.agent_joined_at,
            row.ended_at,
            row.end_reason,
            row.silence_alerts,
            row.keyword_alerts,
            row.last_seq,
            row.line_count,
            row.egress_id,
            _FINISHED,
            _ACTIVE,
        )

    @activity.defn(name=act.RECORD_RECORDING)
    async def record_recording(self, row: act.RecordingRow) -> None:
        """Write the pipeline's outcome: the `recordings` row when stored, the reason on the
        call when failed. With `append_event_for_run` (an ops retry after the call finished)
        also append the call's `recording` event with the next seq and set the call's
        recording status; once per run id, however often this is retried."""
        if row.status not in _RECORDING_REPORTS:
            raise _invalid(
                f"record_recording: status must be stored, failed or uploading, not {row.status!r}"
            )
        if row.status == m.RecordingStatus.STORED and not (row.bucket and row.object_key):
            raise _invalid("record_recording: a stored recording needs a bucket and a key")
        row = act.RecordingRow(**_text(dataclasses.asdict(row)))
        await _guard("record_recording", row.call_id, self._record(row))
        log.info(
            "recording_recorded",
            call_id=row.call_id,
            status=row.status,
            run=row.append_event_for_run or None,
        )

    async def _record(self, row: act.RecordingRow) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if row.status == m.RecordingStatus.STORED:
                await conn.execute(
                    _UPSERT_RECORDING,
                    row.call_id,
                    row.bucket,
                    row.object_key,
                    row.egress_id,
                    row.size_bytes,
                    row.duration_s,
                    row.sha256,
                    row.incomplete,
                    row.at,
                )
                await conn.execute(
                    "UPDATE calls SET recording_error = NULL WHERE call_id = $1", row.call_id
                )
                for seg in row.segments:
                    await conn.execute(
                        _UPSERT_SEGMENT, row.call_id, int(seg["n"]), row.bucket, seg["key"],
                        seg.get("egress_id") or row.egress_id, int(seg["size"]),
                        float(seg["duration_s"]), seg["sha256"], row.at,
                    )  # fmt: skip
            elif row.status == m.RecordingStatus.UPLOADING:
                await conn.execute(
                    "UPDATE calls SET recording_error = NULL WHERE call_id = $1", row.call_id
                )
            else:
                # A failure reported after the recording was stored is stale: leave it be.
                await conn.execute(
                    "UPDATE calls SET recording_error = $2 WHERE call_id = $1 "
                    "AND NOT EXISTS (SELECT 1 FROM recordings WHERE call_id = $1)",
                    row.call_id,
                    row.error or "unknown error",
                )
            if row.append_event_for_run:
                await self._append_run_event(conn, row)

    @staticmethod
    async def _append_run_event(conn: Any, row: act.RecordingRow) -> None:
        call = await conn.fetchrow(
            "SELECT last_seq, recording_status FROM calls WHERE call_id = $1 FOR UPDATE",
            row.call_id,
        )
        if call is None:
            log.warning("recording_event_without_call", call_id=row.call_id)
            return
        done = await conn.fetchval(
            "SELECT 1 FROM call_events WHERE call_id = $1 AND kind = $2 AND data->>'run_id' = $3",
            row.call_id,
            m.EventKind.RECORDING.value,
            row.append_event_for_run,
        )
        if done or (
            row.status == m.RecordingStatus.UPLOADING and call["recording_status"] == row.status
        ):
            return  # reported already (or, for uploading, nothing to tell: the call said so)
        last = await conn.fetchval(
            "SELECT COALESCE(max(seq), 0) FROM call_events WHERE call_id = $1", row.call_id
        )
        seq = max(call["last_seq"], last) + 1
        # A bare run id: a replay by ops of a run from before release 2.
        by = row.by or ("pipeline" if "/" in row.append_event_for_run else "ops_retry")
        event = ev.Recording(status=row.status, run_id=row.append_event_for_run, by=by)
        if row.status == m.RecordingStatus.STORED:
            event = dataclasses.replace(
                event, key=row.object_key, size=row.size_bytes, sha256=row.sha256,
                duration_s=row.duration_s, incomplete=row.incomplete,
                segments=row.segments or ev.UNSET,
            )  # fmt: skip
        elif row.status == m.RecordingStatus.FAILED:
            event.error = row.error
        await conn.execute(
            "INSERT INTO call_events (call_id, seq, kind, at, data) "
            "VALUES ($1, $2, $3, COALESCE(NULLIF($4::text, '')::timestamptz, now()), $5::text::jsonb)",
            row.call_id,
            seq,
            m.EventKind.RECORDING.value,
            row.at,
            json.dumps(event.to_dict()),
        )
        await conn.execute(
            "UPDATE calls SET last_seq = $2, recording_status = $3, updated_at = now() "
            "WHERE call_id = $1",
            row.call_id,
            seq,
            row.status,
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            EVENTS_CHANNEL,
            event_notification(row.call_id, seq, m.EventKind.RECORDING.value),
        )
