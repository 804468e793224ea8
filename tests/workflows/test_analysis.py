"""`analysis-<id>` on the time-skipping server with the real activities (PostgreSQL, a scripted
model, a signature-checking receiver): analysed and delivered; a model that keeps answering
nonsense ends `failed` with no `call.analyzed`; a receiver that never accepts leaves the
delivery counted and undelivered, the analysis done; the call workflow starts it once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities import types as act
from activities.analysis import AnalysisActivities
from activities.starts import StartActivities
from testkit.harness import Harness
from tests.activities.test_analysis import (
    CONVERSATION,
    SECRET,
    Receiver,
    ScriptedModel,
    good_answer,
    model,
    receiver,
    settings,
    stored_call,
)
from workflows.analysis import AnalysisWorkflow, WebhookWorkflow, analysis_workflow_id

__all__ = ["model", "receiver"]  # fixtures


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


async def run_analysis(env: WorkflowEnvironment, pool: asyncpg.Pool, call_id: str,
                       **overrides: Any) -> act.AnalysisDone:  # fmt: skip
    acts = AnalysisActivities(pool, settings(**overrides), env.client)
    queue = f"analysis-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[AnalysisWorkflow, WebhookWorkflow],
                      activities=acts.activities()):  # fmt: skip
        return await env.client.execute_workflow(
            AnalysisWorkflow.run, args=[act.AnalysisRequest(call_id), 10.0, 3600.0],
            id=analysis_workflow_id(call_id), task_queue=queue,
        )  # fmt: skip


async def deliveries(pool: asyncpg.Pool, call_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT event_type, attempts, delivered_at FROM webhook_deliveries WHERE call_id = $1",
        call_id,
    )
    return {r["event_type"]: (r["attempts"], r["delivered_at"] is not None) for r in rows}


async def test_a_call_is_analysed_and_both_webhooks_delivered(
    temporal_test_env: WorkflowEnvironment, pool: asyncpg.Pool,
    model: tuple[str, ScriptedModel], receiver: tuple[str, Receiver],
) -> None:  # fmt: skip
    (model_url, script), (hook_url, rec) = model, receiver
    script.answers = [good_answer()]
    rec.statuses = [503]  # the first message is refused once, then accepted
    call_id = await stored_call(pool, CONVERSATION)
    done = await run_analysis(temporal_test_env, pool, call_id, ANALYSIS_LLM_BASE_URL=model_url,
                              ANALYSIS_WEBHOOK_URL=hook_url, ANALYSIS_WEBHOOK_SECRET=SECRET)  # fmt: skip
    assert (done.status, done.method, done.outcome) == ("done", "llm", "resolved")
    got = {payload["type"] for _, payload in rec.got}
    assert got == {"call.ended", "call.analyzed"} and rec.refused == 0
    sent = await deliveries(pool, call_id)
    assert sorted(a for a, _ in sent.values()) == [1, 2] and all(d for _, d in sent.values())
    ids = [msg for msg, _ in rec.got]
    assert len(ids) == 3 and len(set(ids)) == 2  # the retry carried the same webhook-id


async def test_a_model_that_keeps_answering_nonsense_ends_failed(
    temporal_test_env: WorkflowEnvironment, pool: asyncpg.Pool,
    model: tuple[str, ScriptedModel], receiver: tuple[str, Receiver],
) -> None:  # fmt: skip
    (model_url, script), (hook_url, rec) = model, receiver
    script.answers = [lambda _b: "I think the call went well."] * 5
    call_id = await stored_call(pool, CONVERSATION)
    done = await run_analysis(temporal_test_env, pool, call_id, ANALYSIS_LLM_BASE_URL=model_url,
                              ANALYSIS_WEBHOOK_URL=hook_url, ANALYSIS_WEBHOOK_SECRET=SECRET)  # fmt: skip
    assert done.status == "failed" and len(script.requests) == 5
    row = await pool.fetchrow("SELECT status, error FROM call_analyses WHERE call_id = $1", call_id)
    assert row["status"] == "failed" and "not JSON" in row["error"]
    assert [p["type"] for _, p in rec.got] == ["call.ended"]  # and no call.analyzed


async def test_a_receiver_that_never_accepts_leaves_the_delivery_counted(
    temporal_test_env: WorkflowEnvironment, pool: asyncpg.Pool, receiver: tuple[str, Receiver],
) -> None:  # fmt: skip
    hook_url, rec = receiver
    rec.statuses = [500] * 1000
    call_id = await stored_call(pool, CONVERSATION)
    done = await run_analysis(temporal_test_env, pool, call_id, ANALYSIS_WEBHOOK_URL=hook_url,
                              ANALYSIS_WEBHOOK_SECRET=SECRET)  # fmt: skip
    assert done.status == "done" and done.method == "local"
    sent = await deliveries(pool, call_id)
    assert set(sent) == {"call.ended", "call.analyzed"}
    assert all(attempts > 3 and not delivered for attempts, delivered in sent.values()), sent


async def test_the_call_workflow_starts_its_analysis_once_at_the_end(harness: Harness) -> None:
    h = harness
    handle, _ = await h.start(recording_consent="off")
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "customer", "Hello?")
    assert h.fakes.count(act.START_AFTER_CALL) == 0
    await h.customer_leaves(handle)
    await handle.result()
    assert h.fakes.calls[act.START_AFTER_CALL] == [call_id]


async def test_start_after_call_starts_the_analysis_workflow_once(
    temporal_dev_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    from tests.activities.conftest import Run

    acts = StartActivities(settings())
    call_id = await stored_call(pool, [])
    run = Run(ActivityEnvironment(client=temporal_dev_env.client))
    await run(acts.start_after_call, act.AfterCall(call_id))
    await run(acts.start_after_call, act.AfterCall(call_id))  # a retry: the same workflow
    handle = temporal_dev_env.client.get_workflow_handle(analysis_workflow_id(call_id))
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING and desc.run_id
    await handle.terminate("test")
    await run(acts.start_after_call, act.AfterCall(call_id))  # once closed, never again
    assert (await handle.describe()).run_id == desc.run_id
