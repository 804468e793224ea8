"""The Temporal worker: runs the call workflows and every activity on TEMPORAL_TASK_QUEUE.

    python worker.py            # settings from the environment, .env and .devstack/env

Start-up applies pending database migrations, creates the recordings bucket (with its
retention rule) if missing, creates the retention schedule if missing (`ops.retention`: the
schedule, set by `ops temporal setup`, says the retention period, not this worker's setting),
serves metrics on WORKER_METRICS_ADDRESS (the SDK's and the product's), then polls until
SIGINT/SIGTERM; running activities get `--drain-s` seconds to finish before the worker stops.

With WORKER_BUILD_ID set it polls as the Worker Deployment Version
WORKER_DEPLOYMENT_NAME.WORKER_BUILD_ID: it takes new calls once that version is current
(`python -m ops deploy promote`), and keeps the calls pinned to it until they end
(docs/deploy.md). Without one it is an unversioned worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerDeploymentConfig

from activities import egress_has_root_credentials, open_activities
from core.desk import Snapshot, desk_config
from core.log import get_logger, setup_logging
from core.settings import Settings, settings_or_exit
from core.telemetry import setup_tracing
from core.temporal import (
    SearchAttributesMissing,
    TemporalUnavailable,
    connect_temporal,
    ensure_search_attributes,
    exit_process,
)
from ops.metrics import sdk_runtime, serve_metrics
from ops.retention import retention_in_force
from workflows.analysis import AnalysisWorkflow, WebhookWorkflow
from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.desk import DeskWorkflow
from workflows.desk_client import DeskClient
from workflows.erase import EraseCallWorkflow
from workflows.recording import RecordingWorkflow
from workflows.retention import RetentionWorkflow

WORKFLOWS = [
    CallWorkflow,
    RecordingWorkflow,
    EraseCallWorkflow,
    RetentionWorkflow,
    AnalysisWorkflow,
    WebhookWorkflow,
    CallbackWorkflow,
    CampaignWorkflow,
    DeskWorkflow,
]

# Workflow task polls kept open (the SDK's default is 5). A workflow task that finds no poll
# waiting is written to the task queue's backlog and read back later: at 50 lines/s on 2 cores
# five polls were all busy often enough that 11 % of the tasks went that way (56 % for a bare
# worker with one process), each adding a persistence write and a read to the line's latency.
WORKFLOW_TASK_POLLS = 16
# A cancellation reaches an activity only in the answer to a heartbeat the SDK sends, at most
# once per this interval (its default: 60 s). Short, so that an erasure stops an upload in
# seconds (one small RPC per running activity every 5 s).
HEARTBEAT_THROTTLE = timedelta(seconds=5)

log = get_logger("worker")


async def _retention_from_schedule(settings: Settings, client: Client) -> Settings:
    """The settings with the retention period in force (the schedule's), which the recordings
    bucket's lifecycle rule follows: the last worker to start must not change it for all."""
    days = await retention_in_force(
        client,
        task_queue=settings.TEMPORAL_TASK_QUEUE,
        retention_days=settings.RECORDING_RETENTION_DAYS,
    )
    if days != settings.RECORDING_RETENTION_DAYS:
        log.warning(
            "retention_setting_not_applied",
            setting=settings.RECORDING_RETENTION_DAYS,
            in_force=days,
            apply_with="python -m ops temporal setup",
        )
    log.info("retention_schedule", days=days)
    return settings.model_copy(update={"RECORDING_RETENTION_DAYS": days})


async def run(
    settings: Settings, drain_s: float, workflow_task_polls: int = WORKFLOW_TASK_POLLS
) -> int:
    setup_tracing("callcenter-worker")
    runtime, sdk_url = _sdk_runtime(settings)
    try:
        client = await connect_temporal(settings, runtime=runtime)
    except TemporalUnavailable as exc:
        log.error("worker_cannot_start", error=str(exc))
        return 1
    try:
        added = await ensure_search_attributes(client)
    except SearchAttributesMissing as exc:
        log.error("worker_cannot_start", error=str(exc))
        return 1
    if added:
        log.info("search_attributes_registered", names=added, namespace=client.namespace)
    try:
        settings = await _retention_from_schedule(settings, client)
    except RPCError as exc:  # e.g. a namespace without schedules: calls still run
        log.warning("retention_schedule_not_set", error=exc.message)
    if egress_has_root_credentials(settings):
        log.warning(
            "egress_has_root_credentials",
            hint="set EGRESS_S3_ACCESS_KEY/EGRESS_S3_SECRET_KEY to a put-only user (docs/security.md)",
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with (
        open_activities(settings, client) as activities,
        _metrics(
            settings,
            sdk_url,
            DeskClient(client, desk_config(settings), settings.TEMPORAL_TASK_QUEUE).peek,
        ),  # fmt: skip
    ):
        worker = Worker(
            client,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            workflows=WORKFLOWS,
            activities=activities,
            graceful_shutdown_timeout=timedelta(seconds=drain_s),
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(workflow_task_polls),
            deployment_config=deployment_config(settings),
        )
        async with worker:
            log.info(
                "worker_started",
                task_queue=settings.TEMPORAL_TASK_QUEUE,
                namespace=settings.TEMPORAL_NAMESPACE,
                temporal=settings.TEMPORAL_ADDRESS,
                workflows=len(WORKFLOWS),
                activities=len(activities),
                encryption="on" if settings.payload_keys else "off",
                version=v.to_canonical_string() if (v := settings.worker_version) else None,
            )
            await stop.wait()
            log.info("worker_stopping", task_queue=settings.TEMPORAL_TASK_QUEUE)
    log.info("worker_stopped", task_queue=settings.TEMPORAL_TASK_QUEUE)
    return 0


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """With WORKER_BUILD_ID: poll as that Worker Deployment Version, so that each workflow type
    follows its `versioning_behavior` (calls PINNED to the version they started on, the
    long-lived workflows AUTO_UPGRADE). No default behavior: a workflow type that declares none
    stops the worker at start-up instead of being routed by accident. Without a build id: an
    unversioned worker (tests, the time-skipping server, a release before versioning)."""
    version = settings.worker_version
    if version is None:
        return None
    return WorkerDeploymentConfig(version=version, use_worker_versioning=True)


@contextlib.asynccontextmanager
async def _metrics(settings: Settings, sdk_url: str | None,
                   desk: Callable[[], Awaitable[Snapshot | None]] | None = None,
                   ) -> AsyncIterator[None]:  # fmt: skip
    """The metrics port (WORKER_METRICS_ADDRESS), with its own small pool; off when unset."""
    if not settings.WORKER_METRICS_ADDRESS:
        yield
        return
    host, _, port = settings.WORKER_METRICS_ADDRESS.rpartition(":")
    async with contextlib.AsyncExitStack() as stack:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        stack.push_async_callback(pool.close)
        try:
            await stack.enter_async_context(
                serve_metrics(host or "127.0.0.1", int(port), pool, sdk_url, desk)
            )
        except OSError as exc:  # a taken port costs the metrics, never the calls
            log.error(
                "metrics_port_unavailable", address=settings.WORKER_METRICS_ADDRESS, error=str(exc)
            )
        yield


def _sdk_runtime(settings: Settings) -> tuple[Runtime | None, str | None]:
    if not settings.WORKER_METRICS_ADDRESS:
        return None, None
    try:
        return sdk_runtime()
    except Exception as exc:  # the SDK's exporter could not bind: run without its metrics
        log.error("sdk_metrics_unavailable", error=str(exc))
        return None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="worker.py",
        description="Temporal worker of the call center: CallWorkflow, RecordingWorkflow, "
        "EraseCallWorkflow and their activities on TEMPORAL_TASK_QUEUE. Settings come from "
        "the environment, .env and .devstack/env (TEMPORAL_ADDRESS, DATABASE_URL, MINIO_*, "
        "LIVEKIT_*, PAYLOAD_KEYS, ...).",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=30.0,
        help="on SIGINT/SIGTERM, seconds running activities get to finish (default 30)",
    )
    parser.add_argument(
        "--workflow-task-polls",
        type=int,
        default=WORKFLOW_TASK_POLLS,
        help=f"workflow task polls kept open on the server (default {WORKFLOW_TASK_POLLS})",
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    setup_logging()
    return asyncio.run(run(settings, args.drain_s, max(1, args.workflow_task_polls)))


if __name__ == "__main__":
    exit_process(main())
