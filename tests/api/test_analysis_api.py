"""After the call, as the API serves it, against the real API and PostgreSQL: the analysis and its
deliveries (`GET /api/calls/{id}/analysis`), the report's copy of it, search by outcome,
sentiment and minimum score, the QA export (`GET /api/analysis.csv`), and ops' rerun and replay
(auth, 404, 409, 422; the rerun really runs `analysis-<id>` on the whole stack)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg

from core.models import new_call_id
from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack, RunningApi, database_only_api

RUBRIC = ("greeted_and_named", "recording_disclosed", "need_identified", "accurate_answers_from_tools",
          "next_step_agreed")  # fmt: skip


def _document(lines: list[str], outcome: str = "resolved", make: str = "Toyota") -> dict[str, Any]:
    passed = [True, False, True, None, True]
    return {
        "summary": 'The customer said: "I want a RAV4".',
        "outcome": outcome,
        "method": "local",
        "sentiment": {"label": "positive", "turning_points": [{"line_id": lines[1], "to": "positive"}]},
        "fields": {
            "vehicle": {"vin": "VIN1", "year": 2022, "make": make, "model": "RAV4"},
            "budget_usd": None,
            "trade_in": None,
            "test_drive_booked": True,
            "test_drive_at": "2026-12-10T10:00:00+00:00",
            "handoff_requested": False,
        },
        "scorecard": [
            {"id": i, "passed": p, "evidence": [lines[0]] if p else [], "note": "n"}
            for i, p in zip(RUBRIC, passed, strict=True)
        ],
    }  # fmt: skip


async def add_analysed_call(
    db: asyncpg.Connection,
    *,
    status: str = "completed",
    outcome: str = "resolved",
    sentiment: str = "positive",
    score: float | None = 0.75,
    method: str = "local",
    created_at: datetime | None = None,
    make: str = "Toyota",
    analysed: bool = True,
) -> tuple[str, list[str]]:
    """A stored call with two lines and (when `analysed`) its analysis and two deliveries."""
    call_id = new_call_id()
    await db.execute(
        "INSERT INTO calls (call_id, room_name, customer_name, status, created_at, ended_at, "
        "last_seq) VALUES ($1, $2, 'Avery Analysed', $3, $4, now(), 2)",
        call_id, f"call-{call_id}", status, created_at or datetime.now(UTC),
    )  # fmt: skip
    lines = [f"line-a-{call_id}", f"line-b-{call_id}"]
    for seq, (line, speaker, text) in enumerate(
        [(lines[0], "assistant", "Hi, I am Sarah."), (lines[1], "customer", "I want a RAV4")], 1
    ):
        await db.execute(
            "INSERT INTO call_events (call_id, seq, kind, at, data) "
            "VALUES ($1, $2, 'final_transcript', now(), $3::jsonb)",
            call_id, seq, json.dumps({"id": line, "speaker": speaker, "text": text}),
        )  # fmt: skip
    if analysed:
        await db.execute(
            "INSERT INTO call_analyses (call_id, status, method, outcome, sentiment, score, "
            "document, runs) VALUES ($1, 'done', $2, $3, $4, $5, $6::jsonb, 1)",
            call_id, method, outcome, sentiment, score,
            json.dumps(_document(lines, outcome, make)),
        )  # fmt: skip
        for kind, status_code, delivered in (
            ("call_ended", 200, True),
            ("call_analyzed", 500, False),
        ):
            await db.execute(
                "INSERT INTO webhook_deliveries (id, call_id, event_type, payload, attempts, "
                "last_status, last_attempt_at, delivered_at) VALUES ($1, $2, $3, '{}', $4, $5, "
                "now(), CASE WHEN $6 THEN now() END)",
                f"msg_{call_id}_{kind}_1", call_id, kind.replace("_", "."),
                1 if delivered else 3, status_code, delivered,
            )  # fmt: skip
    return call_id, lines


async def test_analysis_endpoint_and_report(pg_dsn: str, s3: Any, db: asyncpg.Connection) -> None:
    call_id, lines = await add_analysed_call(db, score=2 / 3)
    async with database_only_api(pg_dsn, s3) as api:
        r = await api.http("GET", f"/api/calls/{call_id}/analysis", token=SUPERVISOR)
        assert r.status == 200, r.body
        assert (r.body["method"], r.body["outcome"], r.body["sentiment"]) == (
            "local",
            "resolved",
            "positive",
        )
        assert r.body["score"] == 0.667  # stored as float4: served as the three decimals it holds
        assert r.body["analysis"]["scorecard"][1] == {
            "id": "recording_disclosed",
            "passed": False,
            "evidence": [],
            "note": "n",
        }
        got = {d["event_type"]: d for d in r.body["deliveries"]}
        assert (got["call.ended"]["attempts"], got["call.ended"]["last_status"]) == (1, 200)
        assert got["call.ended"]["delivered_at"] is not None
        assert (got["call.analyzed"]["attempts"], got["call.analyzed"]["last_status"]) == (3, 500)
        assert got["call.analyzed"]["delivered_at"] is None
        spec = await api.http("GET", "/docs/openapi.json")
        csv_ok = spec.body["paths"]["/api/analysis.csv"]["get"]["responses"]["200"]
        assert list(csv_ok["content"]) == ["text/csv"]

        # The report carries the same analysis, and each line's id (what the evidence cites).
        rep = await api.http("GET", f"/api/calls/{call_id}/report", token=OPS)
        assert rep.status == 200, rep.body
        assert rep.body["analysis"]["analysis"] == r.body["analysis"]
        assert rep.body["analysis"]["deliveries"] == r.body["deliveries"]
        assert [x["id"] for x in rep.body["transcript"]] == lines

        bare, _ = await add_analysed_call(db, analysed=False)
        rep = await api.http("GET", f"/api/calls/{bare}/report", token=SUPERVISOR)
        assert rep.status == 200 and rep.body["analysis"] is None
        nothing = await api.http("GET", f"/api/calls/{bare}/analysis", token=SUPERVISOR)
        assert nothing.status == 404 and nothing.error["code"] == "analysis_not_found"
        bad = await api.http("GET", "/api/calls/not-an-id!/analysis", token=SUPERVISOR)
        assert bad.status == 422 and bad.error["field"] == "call_id"
        extra = await api.http("GET", f"/api/calls/{call_id}/analysis?x=1", token=SUPERVISOR)
        assert extra.status == 422 and extra.error["field"] == "x"
        assert (await api.http("GET", f"/api/calls/{call_id}/analysis")).status == 401


async def _search(api: RunningApi, **params: Any) -> Any:
    return await api.http("GET", f"/api/calls/search?{urlencode(params)}", token=SUPERVISOR)


async def test_search_by_outcome_sentiment_and_score(
    pg_dsn: str, s3: Any, db: asyncpg.Connection
) -> None:
    day = datetime(2031, 1, 5, tzinfo=UTC) + timedelta(minutes=new_call_id().__hash__() % 1000)
    at = {"from": day.isoformat(), "to": (day + timedelta(hours=1)).isoformat()}
    won, _ = await add_analysed_call(db, created_at=day, score=1.0)
    follow, _ = await add_analysed_call(db, created_at=day + timedelta(seconds=1),
                                        outcome="follow_up", sentiment="negative", score=0.25)  # fmt: skip
    unjudged, _ = await add_analysed_call(db, created_at=day + timedelta(seconds=2),
                                          outcome="abandoned", sentiment="neutral", score=None)  # fmt: skip
    bare, _ = await add_analysed_call(db, created_at=day + timedelta(seconds=3), analysed=False)
    async with database_only_api(pg_dsn, s3) as api:

        async def ids(**params: Any) -> list[str]:
            r = await _search(api, **at, **params)
            assert r.status == 200, r.body
            return [c["call_id"] for c in r.body["calls"]]

        assert await ids() == [bare, unjudged, follow, won]
        assert await ids(outcome="resolved") == [won]
        assert await ids(outcome="follow_up,abandoned") == [unjudged, follow]
        assert await ids(sentiment="negative") == [follow]
        assert await ids(score="0.5") == [won]
        assert await ids(score="0") == [follow, won]  # no score (none judged) is no match
        assert await ids(outcome="resolved", sentiment="negative") == []
        # Each result carries its analysis in brief.
        r = await _search(api, **at, outcome="follow_up")
        found = r.body["calls"][0]
        assert (found["outcome"], found["sentiment"], found["score"], found["analysis_method"]) == (
            "follow_up", "negative", 0.25, "local")  # fmt: skip
        r = await _search(api, **at)
        assert r.body["calls"][0]["outcome"] is None  # not analysed (yet)

        for params, field in (
            ({"outcome": "won"}, "outcome"),
            ({"sentiment": "happy"}, "sentiment"),
            ({"score": "1.5"}, "score"),
            ({"score": "-0.1"}, "score"),
            ({"score": "high"}, "score"),
            ({"score": "nan"}, "score"),
        ):
            r = await _search(api, **params)
            assert r.status == 422, (params, r.body)
            assert r.error["field"] == field, (params, r.body)


async def test_analysis_csv_export(pg_dsn: str, s3: Any, db: asyncpg.Connection) -> None:
    day = datetime(2032, 3, 1, tzinfo=UTC) + timedelta(minutes=new_call_id().__hash__() % 1000)
    first, _ = await add_analysed_call(db, created_at=day, make='=HYPERLINK("http://x")')
    second, _ = await add_analysed_call(db, created_at=day + timedelta(seconds=5),
                                        outcome="handed_off", score=None, method="llm")  # fmt: skip
    await add_analysed_call(db, created_at=day + timedelta(hours=2))  # outside the range
    await add_analysed_call(db, created_at=day + timedelta(seconds=9), analysed=False)
    rng = {"from": day.isoformat(), "to": (day + timedelta(hours=1)).isoformat()}
    async with database_only_api(pg_dsn, s3) as api:
        r = await api.http("GET", f"/api/analysis.csv?{urlencode(rng)}", token=SUPERVISOR)
        assert r.status == 200, r.body
        assert r.headers["Content-Type"].startswith("text/csv")
        assert r.headers.get("Transfer-Encoding") == "chunked"  # streamed, not built whole
        assert "attachment" in r.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(r.body)))
        header = next(csv.reader(io.StringIO(r.body)))
        assert header == [
            "call_id", "created_at", "ended_at", "analyzed_at", "status", "method", "outcome",
            "sentiment", "score", "runs",
            *(f"scorecard.{i}" for i in RUBRIC),
            "field.vehicle.vin", "field.vehicle.year", "field.vehicle.make",
            "field.vehicle.model", "field.budget_usd", "field.trade_in", "field.test_drive_booked",
            "field.test_drive_at", "field.handoff_requested",
        ]  # fmt: skip
        assert [x["call_id"] for x in rows] == [first, second]
        one = rows[0]
        assert (one["method"], one["outcome"], one["sentiment"], one["score"]) == (
            "local", "resolved", "positive", "0.75")  # fmt: skip
        assert [one[f"scorecard.{i}"] for i in RUBRIC] == ["pass", "fail", "pass", "", "pass"]
        assert one["field.vehicle.year"] == "2022" and one["field.test_drive_booked"] == "true"
        assert one["field.budget_usd"] == ""
        # A cell a spreadsheet would run as a formula is written as text.
        assert one["field.vehicle.make"] == '\'=HYPERLINK("http://x")'
        assert (rows[1]["method"], rows[1]["outcome"], rows[1]["score"]) == (
            "llm",
            "handed_off",
            "",
        )

        for who in (OPS, ADMIN):
            r = await api.http("GET", f"/api/analysis.csv?{urlencode(rng)}", token=who)
            assert r.status == 200
        assert (await api.http("GET", f"/api/analysis.csv?{urlencode(rng)}")).status == 401
        for params, field in (
            ({"from": rng["from"]}, "to"),
            ({"to": rng["to"]}, "from"),
            ({"from": "yesterday", "to": rng["to"]}, "from"),
            ({"from": rng["to"], "to": rng["from"]}, "to"),
            ({"from": rng["from"], "to": (day + timedelta(days=400)).isoformat()}, "to"),
            ({**rng, "format": "xlsx"}, "format"),
        ):
            r = await api.http("GET", f"/api/analysis.csv?{urlencode(params)}", token=SUPERVISOR)
            assert r.status == 422, (params, r.body)
            assert r.error["field"] == field, (params, r.body)


async def test_rerun_and_replay_refuse_what_they_cannot_do(
    pg_dsn: str, s3: Any, db: asyncpg.Connection
) -> None:
    call_id, _ = await add_analysed_call(db)
    live, _ = await add_analysed_call(db, status="in_progress", analysed=False)
    msg = f"msg_{call_id}_call_analyzed_1"
    async with database_only_api(pg_dsn, s3) as api:
        rerun = f"/api/calls/{call_id}/analysis/rerun"
        assert (await api.http("POST", rerun)).status == 401
        assert (await api.http("POST", rerun, token=SUPERVISOR)).status == 403
        r = await api.http("POST", f"/api/calls/{live}/analysis/rerun", token=OPS)
        assert r.status == 409 and r.error["code"] == "call_live"
        r = await api.http("POST", f"/api/calls/{new_call_id()}/analysis/rerun", token=OPS)
        assert r.status == 404 and r.error["code"] == "call_not_found"
        r = await api.http("POST", "/api/calls/bad!/analysis/rerun", token=OPS)
        assert r.status == 422 and r.error["field"] == "call_id"
        r = await api.http("POST", rerun, token=OPS, json_body={"why": "x"})
        assert r.status == 422

        replay = f"/api/webhooks/{msg}/replay"
        assert (await api.http("POST", replay)).status == 401
        assert (await api.http("POST", replay, token=SUPERVISOR)).status == 403
        r = await api.http("POST", "/api/webhooks/msg_nope/replay", token=OPS)
        assert r.status == 422 and r.error["field"] == "msg_id"
        r = await api.http(
            "POST", f"/api/webhooks/msg_{new_call_id()}_call_ended_1/replay", token=OPS
        )
        assert r.status == 404 and r.error["code"] == "webhook_not_found"
    after = await db.fetchrow("SELECT runs, status FROM call_analyses WHERE call_id = $1", call_id)
    assert (after["runs"], after["status"]) == (1, "done")  # refusals changed nothing


async def test_rerun_runs_the_analysis_again(api_stack: ApiStack) -> None:
    conn = await asyncpg.connect(api_stack.settings.database_url)
    try:
        call_id, _ = await add_analysed_call(conn, outcome="abandoned", sentiment="negative")
        r = await api_stack.api.http("POST", f"/api/calls/{call_id}/analysis/rerun", token=OPS)
        assert r.status == 202, r.body
        for _ in range(300):
            row = await conn.fetchrow(
                "SELECT runs, method, outcome FROM call_analyses WHERE call_id = $1", call_id
            )
            if row["runs"] == 2:
                break
            await asyncio.sleep(0.1)
        # The local method read the call's own lines again: the customer spoke, so not abandoned.
        assert (row["runs"], row["method"], row["outcome"]) == (2, "local", "follow_up")
    finally:
        await conn.close()
