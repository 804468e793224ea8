"""A call's analysis as the API serves it (workflows/analysis.py writes it): one document for
`GET /api/calls/{id}/analysis` and the report, the rows of the QA export
(`GET /api/analysis.csv`), and what ops do (rerun, replay, list deliveries), shared by the API
and `python -m ops analysis|webhooks` so both refuse the same things.

The export's columns come from the configured rubric and fields schema, not from the rows, so
every file of one deployment has the same header and can be streamed row by row: one column per
scorecard item (`pass`, `fail`, or empty when not judged) and one per field, nested objects
flattened with dots (`field.vehicle.make`), lists as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from api.domain import store
from core.analysis import Rubric

BASE_COLUMNS = (
    "call_id", "created_at", "ended_at", "analyzed_at", "status", "method", "outcome",
    "sentiment", "score", "runs",
)  # fmt: skip
# `score` is a float4: read it as the three decimals it was stored with, not 0.66699999.
SCORE = "round(score::numeric, 3)::float8 AS score"
# A cell that a spreadsheet would run as a formula (OWASP "CSV injection"): fields come from
# what a customer said, so such a cell is written as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


async def stored_analysis(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    """The analysis of `call_id` with its webhook deliveries, or None before there is one."""
    row = await pool.fetchrow(
        "SELECT call_id, status, method, outcome, sentiment, "
        + SCORE
        + ", runs, analyzed_at, error, "
        "document::text AS document FROM call_analyses WHERE call_id = $1",
        call_id,
    )
    if row is None:
        return None
    out = dict(row)
    out["analysis"] = json.loads(out.pop("document")) if row["document"] else None
    out["analyzed_at"] = store.iso_or_none(row["analyzed_at"])
    out["deliveries"] = await list_deliveries(pool, call_id=call_id, limit=1000, oldest_first=True)
    return out


# --- what ops do ------------------------------------------------------------------------------

LIVE = ("waiting_for_agent", "in_progress", "ending")
DELIVERY_COLUMNS = ("id", "call_id", "event_type", "attempts", "last_status", "last_error",
                    "last_attempt_at", "delivered_at")  # fmt: skip


class NoSuchCall(LookupError):
    pass


class CallLive(Exception):
    """The call has not ended: there is nothing to analyse yet."""


async def next_run(pool: asyncpg.Pool, call_id: str) -> int:
    """The number of the run ops may start now (`workflows.analysis.rerun_analysis`);
    `NoSuchCall`, or `CallLive` before the call has ended."""
    status = await pool.fetchval("SELECT status FROM calls WHERE call_id = $1", call_id)
    if status is None:
        raise NoSuchCall(call_id)
    if status in LIVE:
        raise CallLive(call_id)
    runs = await pool.fetchval("SELECT runs FROM call_analyses WHERE call_id = $1", call_id)
    return int(runs or 0) + 1


async def message_call(pool: asyncpg.Pool, msg_id: str) -> str | None:
    """The call of a stored webhook message (None: no such message, nothing to replay)."""
    call_id = await pool.fetchval("SELECT call_id FROM webhook_deliveries WHERE id = $1", msg_id)
    return None if call_id is None else str(call_id)


async def list_deliveries(
    pool: asyncpg.Pool,
    *,
    call_id: str | None = None,
    undelivered: bool = False,
    limit: int = 50,
    oldest_first: bool = False,
) -> list[dict[str, Any]]:
    """Webhook messages (newest first unless `oldest_first`), of one call and/or only those not
    delivered: attempts, the receiver's last status, delivered when."""
    order = "created_at, id" if oldest_first else "created_at DESC, id"
    rows = await pool.fetch(
        f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM webhook_deliveries "
        "WHERE ($1::text IS NULL OR call_id = $1) AND (NOT $2 OR delivered_at IS NULL) "
        f"ORDER BY {order} LIMIT $3",
        call_id, undelivered, limit,
    )  # fmt: skip
    stamps = ("last_attempt_at", "delivered_at")
    return [{k: store.iso_or_none(v) if k in stamps else v for k, v in dict(r).items()}
            for r in rows]  # fmt: skip


# --- the QA export ------------------------------------------------------------------------------


def field_columns(schema: dict[str, Any], prefix: str = "field.") -> list[str]:
    """One column per leaf of the fields schema: objects with properties are opened."""
    out: list[str] = []
    for name, spec in (schema.get("properties") or {}).items():
        if isinstance(spec, dict) and spec.get("properties"):
            out += field_columns(spec, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def export_columns(fields: dict[str, Any], rubric: Rubric) -> list[str]:
    return [*BASE_COLUMNS, *(f"scorecard.{i}" for i in rubric.ids), *field_columns(fields)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _leaf(fields: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(fields, dict):
            return None
        fields = fields.get(key)
    return fields


def export_row(row: dict[str, Any], columns: list[str]) -> list[str]:
    """One call's line of the export (`row`: the call_analyses row joined with its call's times,
    `document` decoded)."""
    doc = row.get("document") or {}
    passed = {item.get("id"): item.get("passed") for item in doc.get("scorecard", [])}
    out = []
    for col in columns:
        if col.startswith("scorecard."):
            verdict = passed.get(col.removeprefix("scorecard."))
            out.append("" if verdict is None else ("pass" if verdict else "fail"))
        elif col.startswith("field."):
            out.append(_cell(_leaf(doc.get("fields"), col.removeprefix("field.").split("."))))
        else:
            value = row.get(col)
            out.append(_cell(store.iso_or_none(value) if col.endswith("_at") else value))
    return out


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


async def export_rows(
    conn: asyncpg.Connection, start: Any, end: Any, columns: list[str], batch: int = 200
) -> AsyncIterator[list[str]]:
    """The export's lines for calls created in `[start, end)`, oldest first, read through a
    server-side cursor (`conn` must be in a transaction): memory holds one batch, not the range."""
    cursor = conn.cursor(
        "SELECT a.call_id, c.created_at, c.ended_at, a.analyzed_at, a.status, a.method, "
        "a.outcome, a.sentiment, " + SCORE + ", a.runs, a.document::text AS document "
        "FROM call_analyses a JOIN calls c USING (call_id) "
        "WHERE c.created_at >= $1 AND c.created_at < $2 ORDER BY c.created_at, a.call_id",
        start,
        end,
        prefetch=batch,
    )
    async for record in cursor:
        row = dict(record)
        row["document"] = json.loads(row["document"]) if row["document"] else None
        yield export_row(row, columns)
