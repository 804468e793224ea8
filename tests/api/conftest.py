"""The API under test: the real app served in this process on a free port, against the session's
real Temporal dev server, PostgreSQL, S3 endpoint and LiveKit emulator, with a worker running the
real workflows and activities.

- `api_stack` (session): everything started once; `.url`, `.http(...)`, `.ws(...)`, tokens.
- `run_api(settings)`: start another instance with different settings (e.g. a low rate limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sanic import Sanic
from temporalio.client import Client
from temporalio.worker import Worker

from activities import open_activities
from agent.lines import api_line
from api.app import create_app
from api.wsproto import OptionalSubprotocolWebSocketProtocol
from core.livekit import room_admin_token
from core.models import SIGNAL_TRANSCRIPT, TranscriptLine, call_workflow_id, room_name_for
from core.settings import Settings, load_settings
from core.temporal import connect_temporal
from devstack.services import free_port
from tests.fixtures.services import (
    TEST_ADMIN_TOKEN,
    TEST_OPS_TOKEN,
    TEST_SUPERVISOR_TOKEN,
)
from worker import WORKFLOWS

ADMIN = TEST_ADMIN_TOKEN
SUPERVISOR = TEST_SUPERVISOR_TOKEN
OPS = TEST_OPS_TOKEN
REP = "test-rep-token-ann-0123456789"  # ann, a rep of general and sales
REP2 = "test-rep-token-bob-0123456789"  # bob, a rep of sales only


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return self.body["error"]  # type: ignore[no-any-return]


@dataclass
class RunningApi:
    app: Sanic
    url: str
    session: aiohttp.ClientSession

    async def http(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text) if text else None
            except ValueError:
                body = text
            return Reply(resp.status, body, dict(resp.headers))

    def ws(self, path: str, *, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.ws_connect(self.url + path, headers=headers, **kw)


def api_settings(
    *,
    pg_dsn: str,
    s3: Any,
    temporal_address: str,
    livekit: Any,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": "api-tests",
        "DATABASE_URL": pg_dsn,
        "MINIO_ENDPOINT": s3.endpoint,
        "MINIO_ACCESS_KEY": s3.access_key,
        "MINIO_SECRET_KEY": s3.secret_key,
        "RECORDINGS_BUCKET": s3.bucket,
        "LIVEKIT_URL": livekit.url if livekit else "http://127.0.0.1:1",
        "LIVEKIT_API_KEY": livekit.api_key if livekit else "devkey",
        "LIVEKIT_API_SECRET": livekit.api_secret
        if livekit
        else "devsecret-devsecret-devsecret-0123456789",
        "API_TOKENS": f"{ADMIN}:admin,{SUPERVISOR}:supervisor,{OPS}:ops,"
        f"ann:{REP}:rep:general+sales,bob:{REP2}:rep:sales",
        "RATE_LIMIT_PER_MINUTE": 100_000,
        "MAX_WAITING_CALLS": 100_000,  # every test call comes from 127.0.0.1
        "MAX_CALLS_PER_CLIENT": 100_000,
        "MAX_LIVE_AI_CALLS": 100_000,
        "AGENT_JOIN_TIMEOUT_S": 20,
        "EGRESS_END_TIMEOUT_S": 20,
        "RECORDING_RETRY_FOR_S": 30,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def run_api(
    settings: Settings,
    *,
    static_dir: Path | None = None,
    wait_temporal: bool = True,
    port: int | None = None,
) -> AsyncIterator[RunningApi]:
    """Serve `create_app(settings)` in this event loop on `port` (default a free one) until the
    block ends."""
    app = create_app(settings, name="api_test", static_dir=static_dir)
    # Sanic's touch-up rewrites class methods once per process; several apps in one process
    # (as here) must skip it.
    app.config.TOUCHUP = False
    port = port or free_port()
    server = await app.create_server(
        host="127.0.0.1",
        port=port,
        return_asyncio_server=True,
        access_log=False,
        protocol=OptionalSubprotocolWebSocketProtocol,
    )
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    session = aiohttp.ClientSession()
    try:
        if wait_temporal:
            await app.ctx.res.wait_temporal(30)
        yield RunningApi(app, f"http://127.0.0.1:{port}", session)
    finally:
        await session.close()
        for task in list(app.websocket_tasks):
            task.cancel()
        await server.before_stop()
        await server.close()
        await server.after_stop()
        Sanic.unregister_app(app)


@contextlib.asynccontextmanager
async def database_only_api(pg_dsn: str, s3: Any, **overrides: Any) -> AsyncIterator[RunningApi]:
    """The API on PostgreSQL alone (no Temporal), once its live fan-out listens."""
    settings = api_settings(
        pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None, **overrides
    )
    async with run_api(settings, wait_temporal=False) as running:
        hub = running.app.ctx.res.live
        for _ in range(100):
            if hub.listening:
                break
            await asyncio.sleep(0.05)
        assert hub.listening
        yield running


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


# --- the whole stack --------------------------------------------------------------------------

TASK_QUEUE = "api-tests"
REQUEST_STARTED = ("CallWorkflow", "CallbackWorkflow", "EraseCallWorkflow")
PHONE_NUMBER = "+15550100000"  # the trunk's number in the API tests' stack
PAYLOAD_KEYS = "test1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="  # 32 bytes, base64


@dataclass
class ApiStack:
    api: RunningApi
    client: Any  # temporalio Client with the payload codec (what the worker and API use)
    raw_client: Any  # the same server without the codec: sees what Temporal stores
    livekit: Any  # tests.fixtures.livekit.LiveKitEmulator
    settings: Settings
    temporal_address: str

    async def count_workflows(self) -> int:
        """Workflows a request can start (calls, callbacks, erasures): not the ones a call that
        ended earlier starts by itself meanwhile (its recording pipeline, its analysis)."""
        kinds = " OR ".join(f"WorkflowType = '{t}'" for t in REQUEST_STARTED)
        query = f"TaskQueue = '{TASK_QUEUE}' AND ({kinds})"
        return (await self.client.count_workflows(query)).count  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    """The product's worker (worker.py's workflows, every real activity) in this process."""
    async with (
        open_activities(settings, client, migrate=False) as activities,
        Worker(
            client,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            workflows=WORKFLOWS,
            activities=activities,
        ),
    ):
        yield


@pytest.fixture(scope="session")
async def _api_stack_session(
    temporal_dev_env: Any, pg_dsn: str, s3: Any, livekit_emulator: Any
) -> AsyncIterator[ApiStack]:
    address = temporal_dev_env.client.service_client.config.target_host
    settings = api_settings(
        pg_dsn=pg_dsn,
        s3=s3,
        temporal_address=address,
        livekit=livekit_emulator,
        TEMPORAL_TASK_QUEUE=TASK_QUEUE,
        PAYLOAD_KEYS=PAYLOAD_KEYS,
        SILENCE_ALERT_S=3600,
        AGENT_JOIN_TIMEOUT_S=30,
        CUSTOMER_REJOIN_GRACE_S=8,  # a rejoin test needs a few seconds; others wait less
        # The phone line (tests/devstack/test_phone_e2e.py): an unanswered phone gives up soon.
        SIP_INBOUND_NUMBERS=PHONE_NUMBER,
        SIP_OUTBOUND_ADDRESS="sip.emulator.invalid",
        SIP_OUTBOUND_NUMBERS=PHONE_NUMBER,
        SIP_OUTBOUND_ALLOWED_PREFIXES="+1555",
        SIP_RINGING_TIMEOUT_S=3,
        CALLBACK_RETRY_S=2,  # tests/devstack/test_callbacks_e2e.py: a busy number again soon
    )
    client = await connect_temporal(settings)
    async with running_worker(client, settings), run_api(settings) as api:
        yield ApiStack(api, client, temporal_dev_env.client, livekit_emulator, settings, address)


@pytest.fixture
async def api_stack(_api_stack_session: ApiStack) -> AsyncIterator[ApiStack]:
    """The session's stack, with the emulator's webhooks pointed at this API for the test."""
    lk = _api_stack_session.livekit
    await lk.set_webhook_url(f"{_api_stack_session.api.url}/webhooks/livekit")
    yield _api_stack_session
    await lk.wait_idle()


async def start_live_call(stack: ApiStack, customer_name: str = "Contract Tester") -> str:
    """A call through the API, its customer joined at the emulator, its agent in (in_progress)."""
    lk = stack.livekit
    r = await stack.api.http("POST", "/api/calls", json_body={"customer_name": customer_name})
    assert r.status == 201, r.body
    call_id = r.body["call_id"]
    await lk.join(r.body["room_name"], r.body["participant_identity"], kind="customer")
    for _ in range(150):
        got = await stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if got.status == 200 and got.body["status"] == "in_progress":
            await log_caught_up(stack, call_id)
            return call_id  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the call never got its agent: {got.body}")


async def log_caught_up(stack: ApiStack, call_id: str) -> None:
    """Wait until PostgreSQL holds every event the call's workflow has decided so far (its log
    is written by an activity after the task that decided: a test comparing the log before and
    after must not see it still arriving)."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        for _ in range(150):
            got = await stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
            decided = got.body.get("state", {}).get("last_seq", 0) if got.status == 200 else 0
            # the row is written with each batch, stamped with the workflow's count then
            written = (
                await conn.fetchval("SELECT row_version FROM calls WHERE call_id = $1", call_id)
                or 0
            )
            if decided and written >= decided:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"the call's log never caught up: {got.body}")


async def say_lines(stack: ApiStack, call_id: str, lines: list[TranscriptLine]) -> None:
    """Final lines as the agent sends them: stored through the API (`/internal/.../lines`, with
    the call's roomAdmin token), then signalled to the call's workflow, which decides on them."""
    token = room_admin_token(
        stack.settings.LIVEKIT_API_KEY.get_secret_value(),
        stack.settings.LIVEKIT_API_SECRET.get_secret_value(),
        room=room_name_for(call_id),
        identity="agent-test",
    )
    body = {"lines": [api_line(line) for line in lines]}
    r = await stack.api.http(
        "POST", f"/internal/calls/{call_id}/lines", token=token(), json_body=body
    )
    assert r.status == 200, r.body
    handle = stack.client.get_workflow_handle(call_workflow_id(call_id))
    for line in lines:
        await handle.signal(SIGNAL_TRANSCRIPT, line)


@pytest.fixture(scope="session")
async def _live_calls(_api_stack_session: ApiStack) -> AsyncIterator[list[str]]:
    started: list[str] = []
    yield started
    for call_id in started:
        await _api_stack_session.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)


@pytest.fixture
async def live_call_id(_live_calls: list[str], api_stack: ApiStack) -> str:
    """A call in progress (agent joined), shared by the tests while it stays live: a test (or
    the fuzzer, which finds ids in `GET /api/calls`) that ends it gets a new one next time."""
    if _live_calls:
        r = await api_stack.api.http("GET", f"/api/calls/{_live_calls[-1]}", token=SUPERVISOR)
        if r.status == 200 and r.body["status"] == "in_progress":
            return _live_calls[-1]
    _live_calls.append(await start_live_call(api_stack))
    return _live_calls[-1]
