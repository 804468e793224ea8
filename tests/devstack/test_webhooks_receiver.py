"""devstack's stand-in CRM (`devstack.webhooks`): it checks each message as Standard Webhooks
says a receiver must. Its check is held against the spec's own library (`standardwebhooks`
signs, it verifies), and the product's real delivery activity is accepted by it; devstack up
points the webhooks at it with a secret it keeps."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from activities import types as act
from activities.analysis import AnalysisActivities
from devstack.up import webhook_settings, webhooks_port
from devstack.webhooks import receiver, verified
from tests.activities.conftest import Run
from tests.activities.test_analysis import CONVERSATION, SECRET, settings, stored_call


def test_the_check_accepts_what_the_spec_library_signs_and_nothing_else() -> None:
    body = json.dumps({"type": "call.ended", "data": {"call_id": "c1"}}).encode()
    now = datetime.now(UTC)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(SECRET).sign("msg_1", now, body.decode())}  # fmt: skip
    assert verified(SECRET, headers, body, time.time())
    # Several signatures (a secret being rotated): any one that matches will do.
    assert verified(SECRET, {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]},
                    body, time.time())  # fmt: skip
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    assert not verified(other, headers, body, time.time())
    assert not verified(SECRET, headers, body + b" ", time.time())  # tampered
    assert not verified(SECRET, {**headers, "webhook-id": "msg_2"}, body, time.time())
    assert not verified(SECRET, headers, body, time.time() + 301)  # stale: a replay
    assert not verified(SECRET, {**headers, "webhook-timestamp": "soon"}, body, time.time())
    assert not verified(SECRET, {k: v for k, v in headers.items() if k != "webhook-signature"},
                        body, time.time())  # fmt: skip


@pytest.fixture
async def crm() -> AsyncIterator[str]:
    runner = web.AppRunner(receiver(SECRET))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/webhooks"
    await runner.cleanup()


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    yield p
    await p.close()


async def test_the_product_delivers_to_the_stand_in_crm(crm: str, pool: asyncpg.Pool) -> None:
    acts = AnalysisActivities(pool, settings(ANALYSIS_WEBHOOK_URL=crm,
                                             ANALYSIS_WEBHOOK_SECRET=SECRET))  # fmt: skip
    call_id = await stored_call(pool, CONVERSATION)
    msg = await Run()(acts.queue_webhook, act.WebhookRequest(call_id, act.EVENT_ENDED))
    assert await Run()(acts.deliver_webhook, msg) == 200
    row = await pool.fetchrow("SELECT attempts, last_status FROM webhook_deliveries WHERE id = $1",
                              msg)  # fmt: skip
    assert (row["attempts"], row["last_status"]) == (1, 200)
    wrong = AnalysisActivities(pool, settings(
        ANALYSIS_WEBHOOK_URL=crm,
        ANALYSIS_WEBHOOK_SECRET="whsec_" + base64.b64encode(b"x" * 32).decode(),
    ))  # fmt: skip
    with pytest.raises(Exception, match="HTTP 401"):
        await Run()(wrong.deliver_webhook, msg)


def test_devstack_points_the_webhooks_at_its_crm_unless_one_is_named() -> None:
    chosen = webhook_settings({}, 8091, {})
    assert chosen["ANALYSIS_WEBHOOK_URL"] == "http://127.0.0.1:8091/webhooks"
    assert webhooks_port(chosen["ANALYSIS_WEBHOOK_URL"]) == 8091
    secret = chosen["ANALYSIS_WEBHOOK_SECRET"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert (
        webhook_settings({}, 8092, {"ANALYSIS_WEBHOOK_SECRET": secret})["ANALYSIS_WEBHOOK_SECRET"]
        == secret
    )  # kept across restarts
    assert webhook_settings({"ANALYSIS_WEBHOOK_URL": "https://crm.example/hooks"}, 8091, {}) == {}
