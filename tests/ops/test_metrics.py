"""Metrics: the API's `/metrics` series move when a call runs and a flood of made-up HTTP
methods adds none; the worker's metrics port serves the Temporal SDK's metrics (its runtime's
Prometheus exporter) and the product's, read from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from api.metrics import METHODS
from core.models import TranscriptLine
from ops.metrics import sdk_runtime, serve_metrics
from tests.api.conftest import ADMIN, ApiStack, say_lines
from tests.ops.conftest import recorded_call, wait_call


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(page: dict[Any, float], name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def http_series(page: dict[Any, float]) -> dict[Any, float]:
    """The request series (others, e.g. a webhook arriving meanwhile, may move on their own)."""
    return {k: v for k, v in page.items() if k[0].startswith(("api_request", "api_requests"))}


async def api_page(stack: ApiStack) -> dict[Any, float]:
    r = await stack.api.http("GET", "/metrics")
    assert r.status == 200
    return samples(r.body)


async def flood(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            verb = "".join(random.choices(string.ascii_uppercase, k=12))
            path = f"/api/calls/{uuid.uuid4().hex}" if random.random() < 0.5 else "/nowhere"
            async with s.request(verb, url + path) as resp:
                assert resp.status < 500, (verb, resp.status)


async def test_api_series_move_with_a_call_and_odd_methods_add_none(api_stack: ApiStack) -> None:
    before = await api_page(api_stack)
    call_id = await recorded_call(api_stack, "Metric Moves")
    after = await api_page(api_stack)
    assert value(after, "api_calls_started_total") == value(before, "api_calls_started_total") + 1
    post = {"route": "/api/calls", "method": "POST", "status": "201"}
    assert (
        value(after, "api_requests_total", **post)
        == value(before, "api_requests_total", **post) + 1
    )
    assert await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)
    await wait_call(api_stack, call_id, status="completed", recording_status="stored")

    await flood(api_stack.api.url, 50)  # the first flood may add its one "other" series per status
    settled = http_series(await api_page(api_stack))
    await flood(api_stack.api.url, 500)
    flooded = http_series(await api_page(api_stack))
    assert set(flooded) == set(settled), set(flooded) - set(settled)
    methods = {
        dict(labels).get("method") for (name, labels) in flooded if name.startswith("api_requests")
    }
    assert methods <= METHODS | {"other", None}, methods
    other = {"route": "unmatched", "method": "other"}
    assert sum(v for (n, labels), v in flooded.items() if n == "api_requests_total" and
               dict(labels).items() >= other.items()) >= 500  # fmt: skip


@workflow.defn(sandboxed=False)
class Tick:
    @workflow.run
    async def run(self) -> str:
        return "tick"


async def test_worker_metrics_port_serves_sdk_and_product_metrics(
    api_stack: ApiStack, pg_dsn: str
) -> None:
    runtime, sdk_url = sdk_runtime()
    client = await Client.connect(api_stack.temporal_address, runtime=runtime)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    try:
        async with (
            serve_metrics("127.0.0.1", 0, pool, sdk_url) as product,
            Worker(client, task_queue=queue, workflows=[Tick]),
            aiohttp.ClientSession() as http,
        ):
            url = f"http://127.0.0.1:{product.port}/metrics"

            async def page() -> dict[Any, float]:
                await product.refresh()
                async with http.get(url) as resp:
                    assert resp.status == 200
                    return samples(await resp.text())

            before = await page()
            call_id = await recorded_call(api_stack, "Worker Metrics")
            live = await page()
            assert value(live, "callcenter_live_calls") >= 1
            assert (
                value(live, "callcenter_calls", status="in_progress")
                == value(before, "callcenter_calls", status="in_progress") + 1
            )
            assert value(live, "callcenter_recordings", state="pending") >= 1
            # a line whose speech ended 3 s before it was signalled: the lag shows it
            spoke = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
            late = TranscriptLine(id="late", speaker="customer", text="Hi", ended_at=spoke)
            await say_lines(api_stack, call_id, [late])
            for _ in range(50):
                lagged = await page()
                if value(lagged, "callcenter_signal_lag_seconds", quantile="1.0") >= 3:
                    break
                await asyncio.sleep(0.2)
            assert 3 <= value(lagged, "callcenter_signal_lag_seconds", quantile="1.0") < 30
            assert await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)
            await wait_call(api_stack, call_id, status="completed", recording_status="stored")
            done = await page()
            assert (
                value(done, "callcenter_calls", status="completed")
                == value(before, "callcenter_calls", status="completed") + 1
            )

            assert await client.execute_workflow(Tick.run, id=f"tick-{queue}", task_queue=queue)
            sdk = await page()
            names = {name for name, _ in sdk}
            assert any(n.startswith("temporal_") for n in names), sorted(names)[:20]
            assert any("workflow_completed" in n for n in names), sorted(names)
    finally:
        await pool.close()


async def test_worker_process_serves_its_metrics_port(
    tmp_path: Any, temporal_dev_env: Any, pg_dsn: str, s3: Any, livekit_emulator: Any
) -> None:
    import signal

    from devstack.services import free_port
    from tests.activities.test_worker import run_worker, service_settings

    queue = f"wm{uuid.uuid4().hex[:8]}"
    address = temporal_dev_env.client.service_client.config.target_host
    port = free_port()
    settings = service_settings(address, pg_dsn, s3, livekit_emulator, queue)
    proc = await run_worker(tmp_path, WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}", **settings)
    try:
        names: set[str] = set()
        async with aiohttp.ClientSession() as http:
            for _ in range(120):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        names = {name for name, _ in samples(await resp.text())}
                except aiohttp.ClientError:
                    names = set()
                if "callcenter_live_calls" in names and any(
                    n.startswith("temporal_") for n in names
                ):
                    break
                await asyncio.sleep(0.5)
        assert "callcenter_live_calls" in names and "callcenter_calls" in names, sorted(names)
        assert any(n.startswith("temporal_") for n in names), sorted(names)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


async def test_a_taken_metrics_port_costs_the_metrics_never_the_worker(
    tmp_path: Any, temporal_dev_env: Any, pg_dsn: str, s3: Any, livekit_emulator: Any
) -> None:
    import signal
    import socket

    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from tests.activities.test_worker import run_worker, service_settings

    queue = f"wt{uuid.uuid4().hex[:8]}"
    address = temporal_dev_env.client.service_client.config.target_host
    settings = service_settings(address, pg_dsn, s3, livekit_emulator, queue)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await run_worker(tmp_path, WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}", **settings)
        assert proc.stderr is not None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while not any(b"worker_started" in line for line in lines):
                    line = await proc.stderr.readline()
                    assert line, b"".join(lines).decode()
                    lines.append(line)
            assert any(b"metrics_port_unavailable" in line for line in lines), lines
            request = DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
            service = temporal_dev_env.client.workflow_service
            async with asyncio.timeout(30):  # the worker polls all the same
                while not (await service.describe_task_queue(request)).pollers:
                    await asyncio.sleep(0.1)
            assert proc.returncode is None
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 30)


async def test_webhook_verification_failures_are_counted(api_stack: ApiStack) -> None:
    name = "api_webhook_verification_failures_total"
    before = await api_page(api_stack)
    r = await api_stack.api.http("POST", "/webhooks/livekit", data=b'{"event": "room_started"}')
    assert r.status == 401
    r = await api_stack.api.http(
        "POST", "/webhooks/livekit", data=b"{}", headers={"Authorization": "not-a-jwt"}
    )
    assert r.status == 401
    after = await api_page(api_stack)
    assert (
        value(after, name, reason="webhook_unsigned")
        == value(before, name, reason="webhook_unsigned") + 1
    )
    assert (
        value(after, name, reason="webhook_invalid")
        == value(before, name, reason="webhook_invalid") + 1
    )


async def test_metrics_labels_benchmark_at_tiny_size() -> None:
    from bench.metrics_labels import run as bench

    before, after = await bench(30)
    assert after.series == before.series and after.body_bytes < before.body_bytes + 2000


async def test_the_worker_port_carries_the_desks_figures(pg_dsn: str) -> None:
    """The desk's snapshot, as the worker's metrics port shows it (ops/metrics.py)."""
    import itertools

    import core.desk as d

    ids = itertools.count()
    book = d.DeskBook(d.DeskConfig(service_level_s=20), None, lambda: f"o{next(ids)}")
    book.set_rep(d.SetRep("ann", "Ann", "available", ["general"]), 0)
    book.enqueue(d.Enqueue("e1", "c1"), 0)
    book.tick(0)
    book.answer(d.AnswerOffer("ann", "o0", True), 8)
    book.enqueue(d.Enqueue("e2", "c2"), 10)
    book.call_left(d.CallLeft("l2", "c2"), 40)

    async def peek() -> d.Snapshot:
        return book.snapshot(50)

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        async with (
            serve_metrics("127.0.0.1", 0, pool, None, peek) as product,
            aiohttp.ClientSession() as http,
        ):
            await product.refresh()
            async with http.get(f"http://127.0.0.1:{product.port}/metrics") as resp:
                page = samples(await resp.text())
    finally:
        await pool.close()
    assert value(page, "callcenter_desk_service_level_percent") == 100.0
    assert value(page, "callcenter_desk_abandon_rate_percent") == 50.0
    assert value(page, "callcenter_desk_calls", outcome="abandoned") == 1.0
    assert value(page, "callcenter_desk_reps", state="busy") == 1.0
    assert value(page, "callcenter_desk_average_wait_seconds") == 8.0
    assert ("callcenter_desk_average_handle_seconds", ()) not in page  # none handled yet


async def test_the_worker_port_carries_callbacks_by_status_and_attempts_by_outcome(
    pg_dsn: str,
) -> None:
    """The `callbacks` rows CallbackWorkflow writes, as the worker's metrics port shows them."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)

    def tries(*outcomes: str) -> str:
        return json.dumps([{"n": i + 1, "call_id": uuid.uuid4().hex[:20], "started_at": 0.0,
                            "outcome": o, "sip_status": 0} for i, o in enumerate(outcomes)])  # fmt: skip

    async def add(status: str, attempts: str = "[]", due_in: str = "1 hour") -> None:
        await pool.execute(
            "INSERT INTO callbacks (callback_id, phone, timezone, status, at, due_at, attempts) "
            "VALUES ($1, '+15550100001', 'America/Chicago', $2, now(), now() + $3::text::interval, "
            "$4::jsonb)",
            f"cb{uuid.uuid4().hex[:20]}", status, due_in, attempts,
        )  # fmt: skip

    try:
        async with (
            serve_metrics("127.0.0.1", 0, pool, None) as product,
            aiohttp.ClientSession() as http,
        ):

            async def page() -> dict[Any, float]:
                await product.refresh()
                async with http.get(f"http://127.0.0.1:{product.port}/metrics") as resp:
                    return samples(await resp.text())

            before = await page()
            await add("scheduled")
            await add("scheduled", due_in="-1 hour")  # nobody dialled it: overdue
            await add("dialing", tries(""))
            await add("completed", tries("busy", "answered"))
            await add("failed", tries("no_answer", "no_answer", "no_answer"))
            await add("failed", tries("rejected"))
            await add("cancelled")
            after = await page()
    finally:
        await pool.close()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert {s: moved("callcenter_callbacks", status=s) for s in
            ("scheduled", "dialing", "completed", "failed", "cancelled")} == {
        "scheduled": 2, "dialing": 1, "completed": 1, "failed": 2, "cancelled": 1}  # fmt: skip
    assert {o: moved("callcenter_callback_attempts", outcome=o) for o in
            ("ringing", "answered", "busy", "no_answer", "rejected", "unavailable",
             "dial_failed", "other")} == {
        "ringing": 1, "answered": 1, "busy": 1, "no_answer": 3, "rejected": 1, "unavailable": 0,
        "dial_failed": 0, "other": 0}  # fmt: skip
    assert moved("callcenter_callbacks_overdue") == 1
    # Every label is there from the start, 0 or not: a dashboard's query never meets a gap.
    assert ("callcenter_callbacks", (("status", "cancelled"),)) in before
    assert ("callcenter_callback_attempts", (("outcome", "dial_failed"),)) in before


async def test_the_worker_port_carries_campaign_progress(pg_dsn: str) -> None:
    """An active campaign's numbers by progress and campaigns by state (ops/metrics.py)."""
    cid, ended = "cp" + uuid.uuid4().hex[:20], "cp" + uuid.uuid4().hex[:20]
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        async with serve_metrics("127.0.0.1", 0, pool, None) as product:
            await product.refresh()
            before = dict(product.snapshot)
            for c, status in ((cid, "scheduled"), (ended, "completed")):
                await pool.execute(
                    "INSERT INTO campaigns (campaign_id, name, timezone, hours, max_concurrent,"
                    " start_at, total, status) VALUES ($1, 'm', 'UTC', '09:00-20:00', 2, now(),"
                    " 5, $2)", c, status,
                )  # fmt: skip
            rows = [(cid, 1, "answered", "c1"), (cid, 2, "busy", "c2"), (cid, 3, "", "c3"),
                    (cid, 4, "do_not_call", ""), (cid, 5, "", ""), (ended, 1, "", "")]  # fmt: skip
            await pool.executemany(
                "INSERT INTO campaign_numbers (campaign_id, seq, outcome, call_id, phone)"
                " VALUES ($1, $2, $3, $4, '+15550000000')", rows,
            )  # fmt: skip
            await product.refresh()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{product.port}/metrics") as resp:
                    page = samples(await resp.text())
    finally:
        await pool.execute("DELETE FROM campaigns WHERE campaign_id = ANY($1)", [cid, ended])
        await pool.close()
    old = {k: float(v) for k, v in _json_of(before["campaign_numbers"]).items()}
    for progress, n in (("answered", 1), ("busy", 1), ("ringing", 1), ("skipped", 1),
                        ("remaining", 1), ("no_answer", 0)):  # fmt: skip
        got = value(page, "callcenter_campaign_numbers", progress=progress)
        key = "do_not_call" if progress == "skipped" else progress
        assert got == old.get(key, 0.0) + n, progress
    assert value(page, "callcenter_campaigns", state="completed") >= 1.0


def _json_of(v: object) -> dict[str, object]:
    import json

    return json.loads(v) if isinstance(v, str) else dict(v)  # type: ignore[arg-type]
