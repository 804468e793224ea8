"""The call's event log in PostgreSQL, as every writer appends to it.

Two writers share `call_events`: the API stores each final transcript line the agent sends (and
the keyword alert it raises), the workflow's activities store what the call decided. Neither
chooses `seq`: each event has an id unique in its call and the database function
`append_call_event` (db/migrations/0005_event_ids.sql) allocates the next seq under a per-call
lock, inserts, counts lines and keyword alerts on the call's row and NOTIFYs, all in the
caller's transaction. A repeated id stores nothing, so a resend is always safe.

One event PostgreSQL refuses (a lone surrogate, a NaN) is dropped alone, with its reason; the
events around it are stored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core import events as ev
from core import models as m
from core.log import get_logger

log = get_logger("core.eventlog")

# NUL and the surrogate code points (a lone half of a UTF-16 pair, as JSON can spell it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_APPEND = "SELECT append_call_event($1, $2, $3, $4, $5::text::jsonb)"
_STORE_LINE = "SELECT store_call_line($1, $2::text::jsonb)"
# What PostgreSQL says of one event it can never store (as opposed to an outage).
REFUSALS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


@dataclass
class NewEvent:
    """One event to append: `event_id` is unique in the call (a resend stores nothing)."""

    event_id: str
    kind: str
    data: dict[str, Any]
    at: str = ""  # ISO 8601; empty: the database's now()


@dataclass
class Appended:
    stored: list[tuple[int, str]] = field(default_factory=list)  # (seq, kind) stored now
    duplicates: int = 0  # ids the log already held
    refused: list[tuple[str, str]] = field(default_factory=list)  # (event_id, reason)


def clean(value: Any) -> Any:
    """What PostgreSQL's text and jsonb can hold: NUL and lone surrogates become U+FFFD, and a
    number JSON cannot express (NaN, infinity) becomes null."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)  # one replacement for each bad character
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _timestamp(at: str) -> datetime | None:
    if not at:
        return None
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return None  # an unreadable time is stored as the time of the write
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def append(conn: Any, call_id: str, events: list[NewEvent]) -> Appended:
    """Append `events` in order inside the caller's transaction (each in a savepoint, so one
    that PostgreSQL refuses is dropped alone). Connection errors propagate."""
    out = Appended()
    for e in events:
        try:
            data = json.dumps(clean(e.data), allow_nan=False)
            async with conn.transaction():  # a savepoint: a refusal undoes this event only
                seq = await conn.fetchval(
                    _APPEND, call_id, clean(e.event_id), clean(e.kind), _timestamp(e.at), data
                )
        except (ValueError, TypeError, *REFUSALS) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            out.refused.append((e.event_id[:100], reason))
            log.warning("event_refused", call_id=call_id, event_id=e.event_id[:100],
                        kind=e.kind, reason=reason)  # fmt: skip
            continue
        if seq is None:
            out.duplicates += 1
        else:
            out.stored.append((seq, e.kind))
    return out


class CallErased(Exception):
    """The call was erased: what was said in it is not stored again."""


@dataclass
class StoredLine:
    seq: int | None  # None: the line was stored before (a resend)
    keyword_alert_seq: int | None = None
    keywords: list[str] = field(default_factory=list)


def line_data(line: m.TranscriptLine) -> dict[str, Any]:
    """A final line as `call_events.data` holds it (what the dashboard and the report read)."""
    return {
        "id": line.id,
        "speaker": line.speaker,
        "text": line.text,
        "confidence": line.confidence,
        "started_at": line.started_at,
        "ended_at": line.ended_at,
        "interrupted": line.interrupted,
        "at": datetime.now(UTC).isoformat(),
    }


def line_events(line: m.TranscriptLine, keywords: list[str]) -> list[NewEvent]:
    """The events one final line makes: the line itself, for a customer's line naming a
    configured keyword its alert (`kw:<line id>`, so a resend raises no second alert), and the
    turn's latency figures the line carries (`m:<line id>`)."""
    out = [NewEvent(line.id, m.EventKind.FINAL_TRANSCRIPT.value, line_data(line))]
    found = m.matched_keywords(line.text, keywords) if line.speaker == "customer" else []
    if found:
        alert = ev.KeywordAlert(line_id=line.id, line_seq=0, keywords=found)
        out.append(NewEvent(f"kw:{line.id}", alert.KIND.value, alert.to_dict()))
    if line.metrics is not None:
        figures = ev.metrics_event(line.metrics)
        out.append(NewEvent(f"m:{line.id}", figures.KIND.value, figures.to_dict()))
    return out


async def store_line(pool: asyncpg.Pool, call_id: str, line: m.TranscriptLine,
                     keywords: list[str]) -> StoredLine:  # fmt: skip
    """Store one final line (with its keyword alert and figures) in one transaction and one
    round trip (`store_call_line`, db/migrations/0012_store_line.sql); idempotent by the line's
    id. The alert names the line's seq, known only once the line is in.

    Raises `CallErased` for a call that was erased (a line resent late must not bring its
    words back) and ValueError for a line PostgreSQL refuses; connection errors propagate."""
    events = line_events(line, keywords)
    try:
        payload = json.dumps(
            [
                {"event_id": clean(e.event_id), "kind": e.kind, "data": clean(e.data)}
                for e in events
            ],
            allow_nan=False,
        )
        result = await pool.fetchval(_STORE_LINE, call_id, payload)
    except (ValueError, TypeError, *REFUSALS):
        return await _store_line_by_event(pool, call_id, line, events)  # which one is refused
    result = json.loads(result) if isinstance(result, str) else result
    if result.get("erased"):
        raise CallErased(call_id)
    seqs: list[int | None] = result["seqs"]
    if seqs[0] is None:
        return StoredLine(seq=None)
    alert = next((i for i, e in enumerate(events) if e.kind == m.EventKind.KEYWORD_ALERT), None)
    return StoredLine(
        seq=seqs[0],
        keyword_alert_seq=seqs[alert] if alert is not None else None,
        keywords=list(events[alert].data["keywords"]) if alert is not None else [],
    )


async def _store_line_by_event(pool: asyncpg.Pool, call_id: str, line: m.TranscriptLine,
                               events: list[NewEvent]) -> StoredLine:  # fmt: skip
    """`store_line` one event at a time, each in a savepoint: a line PostgreSQL refuses is
    reported with its reason, and an alert or figures it refuses are dropped alone."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM erasures WHERE call_id = $1)", call_id
        ):
            raise CallErased(call_id)
        first = await append(conn, call_id, events[:1])
        if first.refused:
            raise ValueError(f"line {line.id} refused: {first.refused[0][1]}")
        if not first.stored:
            return StoredLine(seq=None)
        seq = first.stored[0][0]
        rest = events[1:]
        for e in rest:
            if e.kind == m.EventKind.KEYWORD_ALERT:
                e.data["line_seq"] = seq
        after = await append(conn, call_id, rest)
        kinds = {seq_kind[1]: seq_kind[0] for seq_kind in after.stored}
        alert = next((e for e in rest if e.kind == m.EventKind.KEYWORD_ALERT), None)
        return StoredLine(
            seq=seq,
            keyword_alert_seq=kinds.get(m.EventKind.KEYWORD_ALERT.value),
            keywords=list(alert.data["keywords"]) if alert else [],
        )
