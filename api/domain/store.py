"""Read access to the call tables in PostgreSQL (the workflow writes them; the API only reads,
except for erasure, which runs as a workflow).

Rows come back as plain dicts with timestamps in ISO 8601 so handlers can return them as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import asyncpg

from api.errors import NotFound, ValidationFailed
from core.models import CallStatus, EventKind
from core.telephony import mask_number

ACTIVE_STATUSES = [s.value for s in CallStatus if s.is_active]
ENDED_STATUSES = [s.value for s in CallStatus if not s.is_active]

_CALL_COLUMNS = """call_id, room_name, customer_name, status, recording_status, created_at,
    agent_joined_at, ended_at, end_reason, silence_alerts, keyword_alerts, last_seq, channel,
    direction, phone"""


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode jsonb columns to Python values on every pooled connection."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection
    )


def iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def call_json(row: asyncpg.Record) -> dict[str, Any]:
    """A `calls` row as the API answers it (ISO times, `live`); the workflow's
    `workflows.common.call_row` goes the other way (its state to the row)."""
    out = dict(row)
    for key in ("created_at", "agent_joined_at", "ended_at"):
        out[key] = iso_or_none(out.get(key))
    out["live"] = out["status"] in ACTIVE_STATUSES
    out["phone"] = mask_number(out.get("phone") or "") or None
    return out


def event_row(row: asyncpg.Record) -> dict[str, Any]:
    """One `call_events` row as the dashboard message `{"type", "call_id", "seq", "at", "data"}`."""
    return {
        "type": row["kind"],
        "call_id": row["call_id"],
        "seq": row["seq"],
        "at": iso_or_none(row["at"]),
        "data": row["data"],
    }


async def get_call(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = $1", call_id)
    return call_json(row) if row else None


async def stored_call(pool: asyncpg.Pool, call_id: str) -> dict[str, Any]:
    """The call's row; 404 `call_not_found` when there is none (yet: the workflow writes it in
    its first step)."""
    row = await get_call(pool, call_id)
    if row is None:
        raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
    return row


async def get_calls(pool: asyncpg.Pool, call_ids: list[str]) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = ANY($1::text[])", call_ids
    )
    return [call_json(r) for r in rows]


def encode_cursor(created_at: datetime, call_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), call_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, call_id = json.loads(raw)
        return datetime.fromisoformat(at), str(call_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("cursor: is not a cursor from this API", field="cursor") from None


async def list_calls(
    pool: asyncpg.Pool, status: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; `status` is active | ended | all. Returns the page and the next cursor."""
    statuses = {"active": ACTIVE_STATUSES, "ended": ENDED_STATUSES}.get(status)
    args: list[Any] = [statuses, limit + 1]
    where = "($1::text[] IS NULL OR status = ANY($1::text[]))"
    if cursor:
        at, cid = decode_cursor(cursor)
        where += " AND (created_at, call_id) < ($3, $4)"
        args += [at, cid]
    rows = await pool.fetch(
        f"SELECT {_CALL_COLUMNS} FROM calls WHERE {where} "
        "ORDER BY created_at DESC, call_id DESC LIMIT $2",
        *args,
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["call_id"]) if len(rows) > limit else None
    )
    return [call_json(r) for r in page], next_cursor


async def search_calls(
    pool: asyncpg.Pool, f: dict[str, Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Calls matching every given filter, newest first, a page at a time (keyset on
    `(created_at, call_id)`). `f` holds validated values: q, from, to, statuses, end_reason,
    alerts (any | none | silence | keyword), recordings, and of the call's analysis outcomes,
    sentiments and score (minimum; a call with no analysis, or none judged, does not match)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where: list[str] = []
    if f.get("q"):
        like = arg("%" + _escape_like(f["q"]) + "%")
        where.append(f"(customer_name ILIKE {like} OR call_id ILIKE {like})")
    if f.get("from"):
        where.append(f"created_at >= {arg(f['from'])}")
    if f.get("to"):
        where.append(f"created_at < {arg(f['to'])}")
    if f.get("statuses"):
        where.append(f"status = ANY({arg(f['statuses'])}::text[])")
    if f.get("recordings"):
        where.append(f"recording_status = ANY({arg(f['recordings'])}::text[])")
    if f.get("end_reason"):
        where.append(f"end_reason ILIKE {arg('%' + _escape_like(f['end_reason']) + '%')}")
    alerts = {
        "any": "silence_alerts + keyword_alerts > 0",
        "none": "silence_alerts + keyword_alerts = 0",
        "silence": "silence_alerts > 0",
        "keyword": "keyword_alerts > 0",
    }.get(f.get("alerts") or "")
    if alerts:
        where.append(alerts)
    if f.get("outcomes"):
        where.append(f"outcome = ANY({arg(f['outcomes'])}::text[])")
    if f.get("sentiments"):
        where.append(f"sentiment = ANY({arg(f['sentiments'])}::text[])")
    if f.get("score") is not None:
        where.append(f"score >= {arg(f['score'])}")
    if cursor:
        at, cid = decode_cursor(cursor)
        where.append(f"(created_at, call_id) < ({arg(at)}, {arg(cid)})")
    # The analysis in brief beside each call (a done one; a failed one has no labels).
    rows = await pool.fetch(
        f"SELECT {_CALL_COLUMNS}, outcome, sentiment, score, analysis_method FROM calls "
        "LEFT JOIN (SELECT call_id, outcome, sentiment, round(score::numeric, 3)::float8 AS score,"
        " method AS analysis_method FROM call_analyses WHERE status = 'done') a USING (call_id) "
        f"WHERE {' AND '.join(where) or 'true'} "
        f"ORDER BY created_at DESC, call_id DESC LIMIT {arg(limit + 1)}",
        *args,
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["call_id"]) if len(rows) > limit else None
    )
    return [call_json(r) for r in page], next_cursor


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def events_after(
    pool: asyncpg.Pool | asyncpg.Connection,
    call_id: str,
    after: int,
    *,
    upto: int | None = None,
    kinds: list[str] | None = None,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Events of a call with `after < seq <= upto`, oldest first."""
    rows = await pool.fetch(
        "SELECT call_id, seq, kind, at, data FROM call_events "
        "WHERE call_id = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq <= $3) "
        "AND ($4::text[] IS NULL OR kind = ANY($4::text[])) ORDER BY seq LIMIT $5",
        call_id,
        after,
        upto,
        kinds,
        limit,
    )
    return [event_row(r) for r in rows]


async def transcript_after(
    pool: asyncpg.Pool, call_id: str, after: int, limit: int = 10_000
) -> list[dict[str, Any]]:
    return await events_after(
        pool, call_id, after, kinds=[EventKind.FINAL_TRANSCRIPT.value], limit=limit
    )


async def get_recording(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT call_id, bucket, object_key, egress_id, size_bytes, duration_s, sha256, "
        "incomplete, stored_at FROM recordings WHERE call_id = $1",
        call_id,
    )
    return dict(row) if row else None


async def get_recording_segments(pool: asyncpg.Pool, call_id: str) -> list[dict[str, Any]]:
    """Every stored recording segment of a call in order (one per egress: `recording_segments`;
    a call from before segments has its one `recordings` row), each with its time zero
    (`started_at`, `clock`) from the `recording` event that started its egress."""
    # LiveKit's own start (a `recording` event carrying started_at for this egress) wins over
    # when the workflow saw the egress start (the `recording` event with status recording).
    rows = await pool.fetch(
        "WITH segs AS ("
        "  SELECT s.n, s.bucket, s.object_key, s.egress_id, s.size_bytes, s.duration_s, "
        "  s.sha256, coalesce((SELECT r.incomplete FROM recordings r WHERE r.call_id = $1 "
        "  AND r.object_key = s.object_key), false) AS incomplete, s.stored_at "
        "  FROM recording_segments s WHERE s.call_id = $1 "
        "  UNION ALL "
        "  SELECT 1, r.bucket, r.object_key, r.egress_id, r.size_bytes, r.duration_s, r.sha256, "
        "  r.incomplete, r.stored_at FROM recordings r WHERE r.call_id = $1 "
        "  AND NOT EXISTS (SELECT 1 FROM recording_segments s WHERE s.call_id = $1)) "
        "SELECT r.bucket, r.object_key, r.egress_id, r.size_bytes, r.duration_s, r.sha256, "
        "r.incomplete, r.stored_at, lk.data->>'started_at' AS egress_started_at, "
        "seen.at AS seen_at FROM segs r "
        "LEFT JOIN LATERAL (SELECT e.data FROM call_events e WHERE e.call_id = $1 "
        "  AND e.kind = 'recording' AND e.data->>'egress_id' = r.egress_id "
        "  AND coalesce(e.data->>'started_at', '') <> '' ORDER BY e.seq LIMIT 1) lk ON true "
        "LEFT JOIN LATERAL (SELECT e.at FROM call_events e WHERE e.call_id = $1 "
        "  AND e.kind = 'recording' AND e.data->>'status' = 'recording' "
        "  AND coalesce(e.data->>'egress_id', r.egress_id) = r.egress_id "
        "  ORDER BY e.seq LIMIT 1) seen ON true "
        "ORDER BY r.n, r.stored_at",
        call_id,
    )
    segments = []
    for r in rows:
        seg = dict(r)
        if seg["egress_started_at"]:
            seg["started_at"], seg["clock"] = seg["egress_started_at"], "egress"
        elif seg["seen_at"] is not None:
            seg["started_at"], seg["clock"] = iso_or_none(seg["seen_at"]), "event"
        else:
            seg["started_at"], seg["clock"] = None, "none"
        segments.append(seg)
    return segments


async def test_drives_of(pool: asyncpg.Pool, call_id: str) -> list[dict[str, Any]]:
    """Test drives Sarah booked on this call (no phone numbers: the report does not need them)."""
    rows = await pool.fetch(
        "SELECT reference, vin, scheduled_at, status, created_at FROM test_drives "
        "WHERE call_id = $1 ORDER BY created_at",
        call_id,
    )
    return [
        {
            **dict(r),
            "scheduled_at": iso_or_none(r["scheduled_at"]),
            "created_at": iso_or_none(r["created_at"]),
        }
        for r in rows
    ]


async def get_erasure(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT call_id, requested_by, requested_at, completed_at FROM erasures WHERE call_id = $1",
        call_id,
    )
    return dict(row) if row else None


async def ended_calls(pool: asyncpg.Pool, call_ids: list[str]) -> set[str]:
    """Those of `call_ids` whose row says the call has ended (no row yet: not ended)."""
    if not call_ids:
        return set()
    rows = await pool.fetch(
        "SELECT call_id FROM calls WHERE call_id = ANY($1::text[]) AND NOT status = ANY($2::text[])",
        call_ids,
        ACTIVE_STATUSES,
    )
    return {r["call_id"] for r in rows}
