"""After the call: analyse it, queue its webhooks, deliver them (workflows/analysis.py).

Workflow history never holds what was said: every activity here takes a call id or a delivery
id and reads the call from PostgreSQL itself; results are outcome, sentiment and score labels.

- `analyze_call`: the language model (`ANALYSIS_LLM_BASE_URL`/`_API_KEY`/`_MODEL`, an
  OpenAI-compatible server answering JSON under the document's schema), or the local method when
  none is configured (core/analysis.py). A model's answer that is not valid JSON, does not match
  the schema or cites lines the call never had raises `AnalysisOutputInvalid`: Temporal retries.
- `queue_webhook`: the message (`call.ended`, `call.analyzed`) stored once under an id that stays
  the same on every attempt; nothing when `ANALYSIS_WEBHOOK_URL` is not set.
- `deliver_webhook`: one signed POST (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
  `webhook-signature`); every attempt is counted on the row (what ops see); anything but a 2xx
  raises, and Temporal retries with back-off for up to a day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

import activities.types as act
from activities.types import (
    EVENT_ANALYZED,
    AnalysisDone,
    AnalysisFailed,
    AnalysisRequest,
    WebhookRequest,
)
from core import analysis as an
from core.conversation import read_conversation
from core.log import get_logger
from core.settings import Settings

log = get_logger("activities.analysis")
ERR_OUTPUT_INVALID = "AnalysisOutputInvalid"
ERR_DELIVERY_FAILED = "WebhookDeliveryFailed"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of Standard Webhooks: `v1,` and the base64 HMAC-SHA256
    of `{id}.{timestamp}.{body}` under the secret (`whsec_` and base64)."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    signed = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(signed).decode()


class AnalysisActivities:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, client: Client | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.client = client
        self.fields = an.fields_schema(settings.ANALYSIS_SCHEMA)
        self.rubric = an.rubric(settings.ANALYSIS_RUBRIC)

    def activities(self) -> list[Any]:
        return [self.analyze_call, self.record_analysis_failed, self.queue_webhook,
                self.deliver_webhook]  # fmt: skip

    # --- analysing ----------------------------------------------------------------------

    async def conversation(self, call_id: str) -> an.Conversation | None:
        return await read_conversation(self.pool, call_id)

    @property
    def method(self) -> str:
        s = self.settings
        if s.ANALYSIS_METHOD == "auto":
            return "llm" if s.ANALYSIS_LLM_BASE_URL or s.ANALYSIS_LLM_API_KEY else "local"
        return s.ANALYSIS_METHOD

    @activity.defn(name=act.ANALYZE_CALL)
    async def analyze_call(self, req: AnalysisRequest) -> AnalysisDone:
        conv = await self.conversation(req.call_id)
        if conv is None or not conv.lines:
            return AnalysisDone(req.call_id, "skipped")
        method = self.method
        if method == "llm":
            doc = await self._ask_model(conv)
        else:
            doc = an.check(an.analyze_locally(conv, self.fields, self.rubric), conv, self.fields,
                           self.rubric)  # fmt: skip
        score = an.score(doc)
        await self.pool.execute(
            """INSERT INTO call_analyses (call_id, status, method, outcome, sentiment, score,
                                          document, error, runs)
               SELECT $1, 'done', $2, $3, $4, $5, $6::text::jsonb, NULL, $7
               WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE call_id = $1)
               ON CONFLICT (call_id) DO UPDATE SET status = 'done', method = $2, outcome = $3,
                   sentiment = $4, score = $5, document = $6::text::jsonb, error = NULL,
                   runs = $7, analyzed_at = now()""",
            req.call_id, method, doc["outcome"], doc["sentiment"]["label"], score,
            json.dumps({**doc, "method": method}), req.run,
        )  # fmt: skip
        log.info("call_analyzed", call_id=req.call_id, method=method, outcome=doc["outcome"])
        return AnalysisDone(req.call_id, "done", method, doc["outcome"],
                            doc["sentiment"]["label"], score)  # fmt: skip

    async def _ask_model(self, conv: an.Conversation) -> dict[str, Any]:
        from openai import APIError, AsyncOpenAI

        s = self.settings
        key = s.ANALYSIS_LLM_API_KEY.get_secret_value() if s.ANALYSIS_LLM_API_KEY else "none"
        schema = an.document_schema(self.fields, self.rubric)
        async with AsyncOpenAI(api_key=key, base_url=s.ANALYSIS_LLM_BASE_URL,
                               timeout=s.ANALYSIS_LLM_TIMEOUT_S, max_retries=0) as llm:  # fmt: skip
            try:
                answer = await llm.chat.completions.create(
                    model=s.ANALYSIS_LLM_MODEL,
                    messages=[
                        {"role": "system", "content": an.INSTRUCTIONS},
                        {"role": "user", "content": an.prompt(conv, self.rubric)},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "call_analysis", "schema": schema, "strict": True},
                    },
                    temperature=0,
                )
            except APIError as exc:  # the server's message may echo the request: not logged
                raise ApplicationError(f"model unavailable: {type(exc).__name__}") from None
        text = (answer.choices[0].message.content or "") if answer.choices else ""
        try:
            return an.check(json.loads(text), conv, self.fields, self.rubric)
        except (ValueError, an.AnalysisInvalid) as exc:
            reason = str(exc)[:300] if isinstance(exc, an.AnalysisInvalid) else "not JSON"
            log.warning("analysis_output_invalid", call_id=conv.call_id, reason=reason)
            raise ApplicationError(f"invalid analysis: {reason}", type=ERR_OUTPUT_INVALID) from None

    @activity.defn(name=act.RECORD_ANALYSIS_FAILED)
    async def record_analysis_failed(self, failed: AnalysisFailed) -> None:
        await self.pool.execute(
            """INSERT INTO call_analyses (call_id, status, method, error, runs)
               SELECT $1, 'failed', $2, $3, $4
               WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE call_id = $1)
               ON CONFLICT (call_id) DO UPDATE SET status = 'failed', method = $2, error = $3,
                   document = NULL, outcome = NULL, sentiment = NULL, score = NULL,
                   runs = $4, analyzed_at = now()""",
            failed.call_id, self.method, failed.error[:500], failed.run,
        )  # fmt: skip

    # --- delivering ---------------------------------------------------------------------

    @activity.defn(name=act.QUEUE_WEBHOOK)
    async def queue_webhook(self, req: WebhookRequest) -> str:
        """The message's id ("" when no webhook is configured); stored once per id."""
        if not self.settings.ANALYSIS_WEBHOOK_URL:
            return ""
        async with self.pool.acquire() as conn:
            call = await conn.fetchrow(
                "SELECT call_id, status, end_reason, created_at, ended_at, line_count, "
                "recording_status FROM calls c WHERE call_id = $1 "
                "AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.call_id = c.call_id)",
                req.call_id,
            )
            if call is None:
                return ""
            data: dict[str, Any] = {k: (v.isoformat() if isinstance(v, datetime) else v)
                                    for k, v in dict(call).items()}  # fmt: skip
            if req.event_type == EVENT_ANALYZED:
                row = await conn.fetchrow(
                    "SELECT document::text AS document, analyzed_at FROM call_analyses "
                    "WHERE call_id = $1 AND status = 'done'",
                    req.call_id,
                )
                if row is None:
                    return ""
                data["analysis"] = json.loads(row["document"])
                data["analyzed_at"] = row["analyzed_at"].isoformat()
            msg_id = f"msg_{req.call_id}_{req.event_type.replace('.', '_')}_{req.run}"
            payload = {"type": req.event_type, "timestamp": datetime.now(UTC).isoformat(),
                       "data": data}  # fmt: skip
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, call_id, event_type, payload) "
                "VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (id) DO NOTHING",
                msg_id, req.call_id, req.event_type, json.dumps(payload),
            )  # fmt: skip
        return msg_id

    @activity.defn(name=act.DELIVER_WEBHOOK)
    async def deliver_webhook(self, msg_id: str) -> int:
        s = self.settings
        row = await self.pool.fetchrow(
            "SELECT payload::text AS payload, delivered_at FROM webhook_deliveries WHERE id = $1",
            msg_id,
        )
        if row is None or not s.ANALYSIS_WEBHOOK_URL:
            return 0  # erased meanwhile, or webhooks switched off
        body = row["payload"].encode()
        stamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(stamp), "user-agent": "cme-callcenter"}  # fmt: skip
        if s.ANALYSIS_WEBHOOK_SECRET:
            headers["webhook-signature"] = sign(
                s.ANALYSIS_WEBHOOK_SECRET.get_secret_value(), msg_id, stamp, body
            )
        status, error = None, ""
        try:
            timeout = aiohttp.ClientTimeout(total=s.ANALYSIS_WEBHOOK_TIMEOUT_S)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(
                    s.ANALYSIS_WEBHOOK_URL, data=body, headers=headers, allow_redirects=False
                ) as resp,
            ):
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = type(exc).__name__
        ok = status is not None and 200 <= status < 300
        await self.pool.execute(
            """UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2,
                   last_error = $3, last_attempt_at = now(),
                   delivered_at = CASE WHEN $4 THEN now() ELSE delivered_at END
               WHERE id = $1""",
            msg_id, status, error or None, ok,
        )  # fmt: skip
        if not ok:
            what = f"HTTP {status}" if status is not None else error
            raise ApplicationError(f"webhook {msg_id}: {what}", type=ERR_DELIVERY_FAILED)
        log.info("webhook_delivered", msg_id=msg_id, status=status)
        return int(status or 0)
