"""After the call, against a real PostgreSQL: the local analysis of a stored conversation, the
language model's path against a scripted OpenAI-compatible server (valid, invalid, slow), and
webhook delivery to a receiver that checks signatures with the Standard Webhooks library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from activities import types as act
from activities.analysis import ERR_DELIVERY_FAILED, ERR_OUTPUT_INVALID, AnalysisActivities
from core import analysis as an
from core import eventlog
from core import models as m
from core.settings import Settings, load_settings
from tests.activities.conftest import Run, app_error

BASE = dict(
    DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="minio:9000", MINIO_ACCESS_KEY="a",
    MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://livekit:7880", LIVEKIT_API_KEY="k",
    LIVEKIT_API_SECRET="s", API_TOKENS="t0123456789abcdef:admin", PAYLOAD_KEYS="",
)  # fmt: skip
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
CAMRY = "XK2DEG0D9PCF43ESF"  # in the seeded inventory (db/migrations/0002_agent.sql)
CONVERSATION = [
    ("assistant", "Hi, this is Sarah from CME Auto Sales; this call is recorded."),
    ("customer", "Hi Sarah, I'm looking for a Toyota Camry for my daughter."),
    ("assistant", "We have a 2024 Camry SE at 28,995 dollars."),
    ("customer", "That is too expensive, I am really disappointed."),
    ("assistant", "I understand. I can book a test drive so you can see it."),
    ("customer", "Great, thank you so much, that is perfect!"),
    ("assistant", "You're booked for Saturday at ten. Thanks for calling!"),
]


def settings(**extra: Any) -> Settings:
    return load_settings(_env_file=None, **BASE, **extra)


async def stored_call(pool: asyncpg.Pool, lines: list[tuple[str, str]], *,
                      test_drive: bool = False) -> str:  # fmt: skip
    call_id = m.new_call_id()
    await pool.execute(
        "INSERT INTO calls (call_id, room_name, status, end_reason) "
        "VALUES ($1, $2, 'completed', 'customer_left')",
        call_id, m.room_name_for(call_id),
    )  # fmt: skip
    for i, (speaker, text) in enumerate(lines):
        await eventlog.store_line(pool, call_id, m.TranscriptLine(f"l{i}", speaker, text), [])
    if test_drive:
        await pool.execute(
            "INSERT INTO test_drives (vin, scheduled_at, call_id, customer_name, customer_phone, "
            "reference) VALUES ($1, $2, $3, 'Ada', '+15550001', $4)",
            CAMRY, datetime.now(UTC) + timedelta(days=3 + secrets.randbelow(300),
                                                 minutes=secrets.randbelow(600)),
            call_id, f"TD-{call_id[:8]}",
        )  # fmt: skip
    return call_id


async def analysis_row(pool: asyncpg.Pool, call_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, method, outcome, sentiment, score, document::text AS document, error, "
        "runs FROM call_analyses WHERE call_id = $1",
        call_id,
    )
    assert row is not None
    out = dict(row)
    out["document"] = json.loads(out["document"]) if out["document"] else None
    return out


# --- the local method -----------------------------------------------------------------------


async def test_the_local_analysis_quotes_the_call_and_uses_the_tools_records(
    pool: asyncpg.Pool,
) -> None:
    acts = AnalysisActivities(pool, settings())
    assert acts.method == "local"
    call_id = await stored_call(pool, CONVERSATION, test_drive=True)
    done = await Run()(acts.analyze_call, act.AnalysisRequest(call_id))
    assert (done.status, done.method, done.outcome) == ("done", "local", "resolved")
    row = await analysis_row(pool, call_id)
    doc = row["document"]
    assert (row["status"], row["method"], doc["method"]) == ("done", "local", "local")
    # never a word the call did not say: every quote is a line of it
    said = {text for _, text in CONVERSATION}
    quotes = [q for q in doc["summary"].split('"')[1::2]]
    assert quotes and all(q in said for q in quotes), doc["summary"]
    assert "Camry" in doc["summary"] and "test drive was booked" in doc["summary"]
    # fields: the tool's record; what no tool recorded is unknown, not guessed
    fields = doc["fields"]
    assert fields["test_drive_booked"] is True
    assert fields["vehicle"] == {"vin": CAMRY, "year": 2024, "make": "Toyota", "model": "Camry"}
    assert fields["budget_usd"] is None and fields["trade_in"] is None
    # sentiment: disappointed, then delighted at the end
    assert doc["sentiment"]["label"] == "positive"
    assert [t["to"] for t in doc["sentiment"]["turning_points"]] == ["negative", "positive"]
    card = {item["id"]: item for item in doc["scorecard"]}
    assert card["greeted_and_named"]["passed"] is True
    assert card["greeted_and_named"]["evidence"] == ["l0"]
    assert card["recording_disclosed"]["evidence"] == ["l0"]
    assert card["need_identified"]["evidence"] == ["l1"]
    assert card["next_step_agreed"]["passed"] is True
    assert card["accurate_answers_from_tools"]["passed"] is None  # not judged, not guessed
    assert row["score"] == pytest.approx(1.0)


async def test_a_call_without_a_booking_or_a_greeting_scores_lower(pool: asyncpg.Pool) -> None:
    acts = AnalysisActivities(pool, settings())
    call_id = await stored_call(pool, [("assistant", "Hello."),
                                       ("customer", "This is useless, I hate waiting.")])  # fmt: skip
    done = await Run()(acts.analyze_call, act.AnalysisRequest(call_id))
    assert (done.outcome, done.sentiment) == ("follow_up", "negative")
    assert done.score == pytest.approx(0.0)


async def test_a_call_nobody_spoke_in_is_not_analysed(pool: asyncpg.Pool) -> None:
    acts = AnalysisActivities(pool, settings())
    call_id = await stored_call(pool, [])
    assert (await Run()(acts.analyze_call, act.AnalysisRequest(call_id))).status == "skipped"
    assert await pool.fetchval("SELECT count(*) FROM call_analyses WHERE call_id = $1",
                               call_id) == 0  # fmt: skip


# --- the language model ---------------------------------------------------------------------


@dataclass
class ScriptedModel:
    """`POST /v1/chat/completions` answering each request with the next of `answers` (a
    function of the request's body), after `delay_s`."""

    answers: list[Callable[[dict[str, Any]], str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        await asyncio.sleep(self.delay_s)
        content = self.answers.pop(0)(body)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
        })  # fmt: skip


@contextlib.asynccontextmanager
async def serving(path: str, handler: Any) -> AsyncIterator[str]:
    """A real HTTP server on a free port answering POST `path`; yields its base URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def model() -> AsyncIterator[tuple[str, ScriptedModel]]:
    script = ScriptedModel()
    async with serving("/v1/chat/completions", script.completions) as url:
        yield f"{url}/v1", script


def good_answer(line_id: str = "l3") -> Callable[[dict[str, Any]], str]:
    def answer(body: dict[str, Any]) -> str:
        rubric = body["response_format"]["json_schema"]["schema"]["properties"]["scorecard"]
        ids = rubric["items"]["properties"]["id"]["enum"]
        return json.dumps({
            "summary": "The customer wanted a Camry and booked a test drive for Saturday.",
            "outcome": "resolved",
            "sentiment": {"label": "positive",
                          "turning_points": [{"line_id": line_id, "to": "negative"}]},
            "fields": {"vehicle": {"vin": CAMRY, "year": 2024, "make": "Toyota", "model": "Camry"},
                       "budget_usd": 25000, "trade_in": None, "test_drive_booked": True,
                       "test_drive_at": "2030-01-05T10:00:00+00:00", "handoff_requested": False},
            "scorecard": [{"id": i, "passed": True, "evidence": ["l0"], "note": "ok"}
                          for i in ids],
        })  # fmt: skip

    return answer


async def test_the_model_answers_under_the_schema_and_is_stored(
    pool: asyncpg.Pool, model: tuple[str, ScriptedModel]
) -> None:
    url, script = model
    acts = AnalysisActivities(pool, settings(ANALYSIS_LLM_BASE_URL=url))
    assert acts.method == "llm"
    call_id = await stored_call(pool, CONVERSATION)
    script.answers = [good_answer()]
    done = await Run()(acts.analyze_call, act.AnalysisRequest(call_id))
    assert (done.method, done.outcome, done.sentiment, done.score) == ("llm", "resolved",
                                                                       "positive", 1.0)  # fmt: skip
    sent = script.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert (
        "[l1] customer: Hi Sarah, I'm looking for a Toyota Camry" in sent["messages"][1]["content"]
    )
    row = await analysis_row(pool, call_id)
    assert row["document"]["fields"]["budget_usd"] == 25000 and row["method"] == "llm"


@pytest.mark.parametrize(
    "answer,why",
    [
        (lambda _b: "Sure! Here is the analysis: {", "not JSON"),
        (lambda _b: json.dumps({"summary": "x", "outcome": "great"}), "fails"),
        (good_answer(line_id="l99"), "cites lines the call does not have"),
    ],
)
async def test_an_invalid_answer_is_refused_for_a_retry(
    pool: asyncpg.Pool, model: tuple[str, ScriptedModel], answer: Any, why: str
) -> None:
    url, script = model
    acts = AnalysisActivities(pool, settings(ANALYSIS_LLM_BASE_URL=url))
    call_id = await stored_call(pool, CONVERSATION)
    script.answers = [answer]
    err = await app_error(Run()(acts.analyze_call, act.AnalysisRequest(call_id)))
    assert err.type == ERR_OUTPUT_INVALID and not err.non_retryable and why in str(err)
    assert "Camry" not in str(err)  # the refusal names the rule, never the call's words
    assert await pool.fetchval("SELECT count(*) FROM call_analyses WHERE call_id = $1",
                               call_id) == 0  # fmt: skip


async def test_a_model_too_slow_is_an_error_to_retry(
    pool: asyncpg.Pool, model: tuple[str, ScriptedModel]
) -> None:
    url, script = model
    acts = AnalysisActivities(pool, settings(ANALYSIS_LLM_BASE_URL=url, ANALYSIS_LLM_TIMEOUT_S=0.3))
    call_id = await stored_call(pool, CONVERSATION)
    script.answers, script.delay_s = [good_answer()], 2.0
    err = await app_error(Run()(acts.analyze_call, act.AnalysisRequest(call_id)))
    assert "model unavailable" in str(err) and not err.non_retryable


async def test_a_failed_analysis_is_recorded_with_its_reason(pool: asyncpg.Pool) -> None:
    acts = AnalysisActivities(pool, settings())
    call_id = await stored_call(pool, CONVERSATION)
    await Run()(acts.record_analysis_failed, act.AnalysisFailed(call_id, 1, "invalid analysis"))
    row = await analysis_row(pool, call_id)
    assert (row["status"], row["error"], row["document"]) == ("failed", "invalid analysis", None)


# --- webhooks -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A business's endpoint: verifies each message as the Standard Webhooks library does and
    answers with the next of `statuses` (then 200)."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (webhook-id, payload)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:  # the library's WebhookVerificationError
            self.refused += 1
            return web.Response(status=401)
        self.got.append((request.headers["webhook-id"], payload))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    rec = Receiver()
    async with serving("/hooks", rec.handle) as url:
        yield f"{url}/hooks", rec


async def test_a_webhook_is_signed_retried_under_one_id_and_each_attempt_counted(
    pool: asyncpg.Pool, receiver: tuple[str, Receiver]
) -> None:
    url, rec = receiver
    acts = AnalysisActivities(pool, settings(ANALYSIS_WEBHOOK_URL=url,
                                             ANALYSIS_WEBHOOK_SECRET=SECRET))  # fmt: skip
    call_id = await stored_call(pool, CONVERSATION)
    await Run()(acts.analyze_call, act.AnalysisRequest(call_id))
    msg = await Run()(acts.queue_webhook, act.WebhookRequest(call_id, act.EVENT_ANALYZED))
    assert msg == await Run()(acts.queue_webhook, act.WebhookRequest(call_id, act.EVENT_ANALYZED))
    rec.statuses = [500]
    err = await app_error(Run()(acts.deliver_webhook, msg))
    assert err.type == ERR_DELIVERY_FAILED and "HTTP 500" in str(err)
    assert await Run()(acts.deliver_webhook, msg) == 200
    assert [g[0] for g in rec.got] == [msg, msg] and rec.refused == 0
    payload = rec.got[-1][1]
    assert payload["type"] == "call.analyzed" and payload["data"]["call_id"] == call_id
    assert payload["data"]["analysis"]["outcome"] in an.OUTCOMES
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", msg)
    assert (row["attempts"], row["last_status"]) == (2, 200) and row["delivered_at"] is not None


async def test_a_wrong_secret_is_refused_by_the_receiver(
    pool: asyncpg.Pool, receiver: tuple[str, Receiver]
) -> None:
    url, rec = receiver
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    acts = AnalysisActivities(pool, settings(ANALYSIS_WEBHOOK_URL=url,
                                             ANALYSIS_WEBHOOK_SECRET=other))  # fmt: skip
    call_id = await stored_call(pool, CONVERSATION)
    msg = await Run()(acts.queue_webhook, act.WebhookRequest(call_id, act.EVENT_ENDED))
    err = await app_error(Run()(acts.deliver_webhook, msg))
    assert "HTTP 401" in str(err) and rec.refused == 1 and not rec.got


async def test_no_webhook_is_queued_without_a_url(pool: asyncpg.Pool) -> None:
    acts = AnalysisActivities(pool, settings())
    call_id = await stored_call(pool, CONVERSATION)
    assert await Run()(acts.queue_webhook, act.WebhookRequest(call_id, act.EVENT_ENDED)) == ""


def test_a_bad_webhook_secret_or_url_is_a_settings_error() -> None:
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match="ANALYSIS_WEBHOOK_SECRET"):
        settings(ANALYSIS_WEBHOOK_SECRET="whsec_c2hvcnQ=")
    with pytest.raises(SettingsError, match="ANALYSIS_WEBHOOK_URL"):
        settings(ANALYSIS_WEBHOOK_URL="ftp://crm.example.com")
