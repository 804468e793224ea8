"""PostgreSQL activities: the call's decisions in its event log, its row in `calls`, its recording.

Events are appended through `core.eventlog` (ids unique per call, seq allocated by the database,
NOTIFY in the same transaction; a resend stores nothing, a refused event is dropped alone). The
`calls` row is upserted only by a write at least as new as what it holds (`row_version`), and a
finished call never becomes active again. Lines are not written here: the API stores them as
the agent sends them (api/routes/agent.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import types as act
from core import eventlog
from core import events as ev
from core import models as m
from core.log import get_logger

log = get_logger("activities.database")

T = TypeVar("T")

_ACTIVE = [s.value for s in m.CallStatus if s.is_active]
_FINISHED = [s.value for s in m.CallStatus if not s.is_active]

# The workflow's view of the row: status, times, silence alerts. Lines, keyword alerts and the
# newest seq are counted by `append_call_event` as they are stored (the API stores lines), so
# an update never touches them; a new row starts from what the log already holds.
_UPSERT_CALL = """
INSERT INTO calls AS c (call_id, room_name, customer_name, status, recording_status, created_at,
    agent_joined_at, ended_at, end_reason, silence_alerts, egress_id, row_version, updated_at,
    channel, direction, phone, line_count, keyword_alerts, last_seq)
SELECT $1, $2, $3, $4, $5, COALESCE(NULLIF($6::text, '')::timestamptz, now()),
    NULLIF($7::text, '')::timestamptz, NULLIF($8::text, '')::timestamptz, NULLIF($9::text, ''),
    $10, NULLIF($11::text, ''), $12, now(), $15, $16, NULLIF($17::text, ''),
    count(*) FILTER (WHERE e.kind = 'final_transcript'),
    count(*) FILTER (WHERE e.kind = 'keyword_alert'),
    COALESCE(max(e.seq), 0)
FROM (SELECT kind, seq FROM call_events WHERE call_id = $1) e
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
    egress_id = EXCLUDED.egress_id,
    row_version = EXCLUDED.row_version,
    updated_at = now()
WHERE c.row_version <= EXCLUDED.row_version
  AND NOT (c.status = ANY($13::text[]) AND EXCLUDED.status = ANY($14::text[]))
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


class DatabaseActivities:
    """Built once per worker with an asyncpg pool (any jsonb codec on it does not matter)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name=act.APPEND_CALL_EVENTS)
    async def append_call_events(self, batch: act.EventBatch) -> act.AppendResult:
        """Append the batch's events (once each, by id; one PostgreSQL refuses is dropped alone
        and named in the result), then upsert the call's row, in one transaction."""
        if not m.is_call_id(batch.call_id):
            raise _invalid(f"append_call_events: {batch.call_id!r} is not a call id")
        if batch.call is not None and batch.call.call_id != batch.call_id:
            raise _invalid("append_call_events: the call row belongs to another call")
        done = await _guard("append_call_events", batch.call_id, self._append(batch))
        if done.stored:
            log.debug("call_events_appended", call_id=batch.call_id, inserted=len(done.stored))
        return act.AppendResult(
            inserted=len(done.stored),
            duplicates=done.duplicates,
            refused=[f"{event_id}: {reason}" for event_id, reason in done.refused],
        )

    async def _append(self, batch: act.EventBatch) -> eventlog.Appended:
        events = [
            eventlog.NewEvent(e.id or f"wf:{e.seq}", e.kind, e.data, e.at) for e in batch.events
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            done = await eventlog.append(conn, batch.call_id, events)
            if batch.call is not None:
                await self._upsert_call(conn, batch.call)
        return done

    @staticmethod
    async def _upsert_call(conn: Any, row: act.CallRow) -> None:
        row = act.CallRow(**eventlog.clean(dataclasses.asdict(row)))
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
            row.egress_id,
            row.row_version,
            _FINISHED,
            _ACTIVE,
            row.channel,
            row.direction,
            row.phone,
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
        row = act.RecordingRow(**eventlog.clean(dataclasses.asdict(row)))
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
        """The call's `recording` event for one pipeline run (`rec:<run id>`: once per run)."""
        call = await conn.fetchrow(
            "SELECT recording_status FROM calls WHERE call_id = $1", row.call_id
        )
        if call is None:
            log.warning("recording_event_without_call", call_id=row.call_id)
            return
        if row.status == m.RecordingStatus.UPLOADING and call["recording_status"] == row.status:
            return  # nothing to tell: the call said so
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
        new = eventlog.NewEvent(
            f"rec:{row.append_event_for_run}", event.KIND.value, event.to_dict(), row.at
        )
        done = await eventlog.append(conn, row.call_id, [new])
        if done.stored:
            await conn.execute(
                "UPDATE calls SET recording_status = $2, updated_at = now() WHERE call_id = $1",
                row.call_id,
                row.status,
            )
