"""`python -m core.healthcheck`: the worker is healthy only while it polls its task queue from
this host; the api check is a GET of /healthz."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import healthcheck


@workflow.defn(name="HealthcheckNoop", sandboxed=False)
class Noop:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_the_worker_check_follows_this_hosts_poller(
    temporal_dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"health-{uuid.uuid4().hex[:8]}"
    env: dict[str, Any] = dict(
        TEMPORAL_ADDRESS=temporal_dev_env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=queue, DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="h:9000",
        MINIO_ACCESS_KEY="a", MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://h", LIVEKIT_API_KEY="k",
        LIVEKIT_API_SECRET="s", API_TOKENS="t0123456789abcdef:admin", PAYLOAD_KEYS="",
    )  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert await healthcheck._worker_polls() is False  # nobody polls the queue yet
    async with Worker(temporal_dev_env.client, task_queue=queue, workflows=[Noop]):
        for _ in range(50):
            if await healthcheck._worker_polls():
                break
        assert await healthcheck._worker_polls() is True


def test_unknown_check_is_a_usage_error() -> None:
    assert healthcheck.main(["nope"]) == 2


def test_api_check_fails_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack.services import free_port

    monkeypatch.setenv("API_PORT", str(free_port()))
    assert healthcheck.main(["api"]) == 1
