"""The `ops` command line: dispatch (arguments in `ops.parser`) and failures as exit codes.

Every command has `--help` and `--json` (one JSON document on stdout; progress goes to
stderr). `run(argv, settings=...)` is the in-process entry (tests); `main()` is the script's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from core.settings import Settings, settings_or_exit
from ops import connect
from ops.output import Output
from ops.parser import build_parser

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


# --- commands ----------------------------------------------------------------------------------


class Context:
    def __init__(self, settings: Settings, args: argparse.Namespace, out: Output) -> None:
        self.settings, self.args, self.out = settings, args, out
        self._client: Any = None
        self._pool: Any = None

    async def temporal(self) -> Any:
        if self._client is None:
            self._client = await connect.temporal(self.settings)
        return self._client

    async def pool(self) -> Any:
        if self._pool is None:
            self._pool = await connect.postgres(self.settings)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def calls_list(ctx: Context) -> int:
    from ops.calls import LIST_COLUMNS, list_calls

    rows = await list_calls(await ctx.pool(), ctx.args.status, max(1, ctx.args.limit))
    ctx.out.emit(rows, columns=LIST_COLUMNS)
    return EXIT_OK


async def calls_show(ctx: Context) -> int:
    from ops.calls import show_call

    call = await show_call(await ctx.pool(), ctx.args.call_id)
    if call is None:
        ctx.out.note(f"no call {ctx.args.call_id}")
        return EXIT_FAILED
    ctx.out.emit(call)
    return EXIT_OK


async def calls_erase(ctx: Context) -> int:
    from ops.calls import erase_call

    if not ctx.args.yes:
        if not sys.stdin.isatty():
            ctx.out.note("refusing to erase without --yes (no terminal to confirm on)")
            return EXIT_USAGE
        prompt = f"Erase call {ctx.args.call_id} everywhere? Type its id to confirm: "
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip() != ctx.args.call_id:
            ctx.out.note("not confirmed; nothing erased")
            return EXIT_FAILED
    result = await erase_call(
        await ctx.temporal(),
        ctx.args.call_id,
        by=ctx.args.by,
        task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
        timeout_s=ctx.args.timeout,
    )
    ctx.out.emit(result)
    return EXIT_OK if result["status"] == "erased" else EXIT_FAILED


def _since(delta: timedelta | None) -> datetime | None:
    return datetime.now(UTC) - delta if delta else None


async def recordings_failed(ctx: Context) -> int:
    from ops.recordings import find_failed

    failed = await find_failed(await ctx.temporal(), since=_since(ctx.args.since))
    ctx.out.emit(
        [f.as_dict() for f in failed], columns=("call_id", "status", "closed_at", "reason")
    )
    return EXIT_OK


async def recordings_retry(ctx: Context) -> int:
    from ops.recordings import find_failed, retry_many

    args, out = ctx.args, ctx.out
    if bool(args.call_ids) == bool(args.all_failed):
        out.note("give CALL_ID(s) or --all-failed (not both)")
        return EXIT_USAGE
    if args.since and not args.all_failed:
        out.note("--since goes with --all-failed")
        return EXIT_USAGE
    client = await ctx.temporal()
    ids = list(dict.fromkeys(args.call_ids))
    if args.all_failed:
        ids = [f.call_id for f in await find_failed(client, since=_since(args.since))]
    bar = out.progress(len(ids))
    outcomes = await retry_many(
        client,
        ids,
        on_done=lambda o: bar.step(f"{o.call_id} {o.outcome}"),
        wait_s=args.wait,
        concurrency=max(1, args.concurrency),
    )
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    summary = {"total": len(outcomes), **counts}
    details = [vars(o) for o in outcomes]
    if out.json:
        out.emit({"summary": summary, "results": details})
    else:
        out.emit(details, columns=("call_id", "outcome", "detail"))
        out.emit(" · ".join(f"{k} {v}" for k, v in summary.items()), title="summary:")
    bad = {"refused", "error", "failed"}
    return EXIT_FAILED if any(o.outcome in bad for o in outcomes) else EXIT_OK


async def histories_check(ctx: Context) -> int:
    from core.temporal import data_converter
    from ops.histories import check_cluster, check_files, history_files

    args, out = ctx.args, ctx.out
    if args.files is not None:
        paths = history_files(args.files)
        if not paths:
            out.note(f"no JSON histories at {args.files}")
            return EXIT_USAGE
        report = await check_files(paths, data_converter(ctx.settings))
        where = str(args.files)
    else:
        queue = args.task_queue or ctx.settings.TEMPORAL_TASK_QUEUE
        report = await check_cluster(
            await ctx.temporal(), task_queue=queue, since=datetime.now(UTC) - args.since,
            limit=max(1, args.limit), bridge=args.bridge,
        )  # fmt: skip
        where = f"task queue {queue}"
    if out.json:
        out.emit({"source": where, **report.as_dict()})
    else:
        for f in report.failures:
            out.emit(f"NON-DETERMINISTIC {f['workflow_id']} run {f['run_id']}: {f['error']}")
        verdict = "ok" if report.ok else f"{len(report.failures)} would break: do not deploy"
        out.emit(f"replayed {report.checked} histories from {where}: {verdict}")
        if report.gone:
            out.note(f"{len(report.gone)} listed executions were deleted before their history "
                     f"was fetched (erased or past retention): nothing left to break")  # fmt: skip
    return EXIT_OK if report.ok else EXIT_FAILED


async def histories_export(ctx: Context) -> int:
    from core.models import call_workflow_id, recording_workflow_id
    from ops.histories import export

    args = ctx.args
    wid = (recording_workflow_id if args.recording else call_workflow_id)(args.call_id)
    text = await export(await ctx.temporal(), wid)
    if args.output:
        args.output.write_text(text)
        ctx.out.note(f"wrote {wid} to {args.output}")
    else:
        ctx.out.out.write(text + "\n")
    return EXIT_OK


async def temporal_setup(ctx: Context) -> int:
    from ops.retention import ensure_retention_schedule
    from ops.setup import register_search_attributes

    client = await ctx.temporal()
    result = await register_search_attributes(client, ctx.settings.TEMPORAL_ADDRESS)
    report: dict[str, Any] = vars(result)
    failed = False
    if not ctx.args.no_schedule:
        report["retention_schedule"] = await ensure_retention_schedule(
            client,
            task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
            retention_days=ctx.settings.RECORDING_RETENTION_DAYS,
        )
        report["retention_days"] = ctx.settings.RECORDING_RETENTION_DAYS
        # The lifecycle backstop follows the period at once (a longer one must not let it
        # expire recordings before their calls are erased); workers follow the schedule.
        report["recordings_lifecycle"] = await _recordings_lifecycle(ctx)
        failed = report["recordings_lifecycle"] != "set"
    ctx.out.emit(report)
    if result.manual_command and not ctx.out.json:
        ctx.out.note(
            "This server does not let clients add search attributes (Temporal Cloud). Run:\n  "
            + result.manual_command
        )
    return EXIT_FAILED if result.wrong_type or failed else EXIT_OK


async def _recordings_lifecycle(ctx: Context) -> str:
    """Set the recordings bucket's lifecycle rule to the retention period: "set" or why not."""
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    from activities import minio_client, storage_activities

    storage = storage_activities(ctx.settings, minio_client(ctx.settings))
    try:
        await asyncio.to_thread(storage.ensure_bucket)
    except (MinioException, HTTPError, OSError) as exc:
        return f"failed: {type(exc).__name__}"
    return "set"


async def analysis_rerun(ctx: Context) -> int:
    from ops.analysis import rerun

    result = await rerun(
        await ctx.pool(), await ctx.temporal(), ctx.args.call_id,
        task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
        webhook_for_s=ctx.settings.ANALYSIS_WEBHOOK_FOR_S,
    )  # fmt: skip
    ctx.out.emit(result)
    return EXIT_OK if result["outcome"] == "started" else EXIT_FAILED


async def webhooks_list(ctx: Context) -> int:
    from api.domain.analysis import DELIVERY_COLUMNS, list_deliveries

    rows = await list_deliveries(await ctx.pool(), call_id=ctx.args.call, limit=max(1, ctx.args.limit),
                                 undelivered=ctx.args.undelivered)  # fmt: skip
    ctx.out.emit(rows, columns=DELIVERY_COLUMNS)
    return EXIT_OK


async def webhooks_replay(ctx: Context) -> int:
    from ops.analysis import replay

    pool, client = await ctx.pool(), await ctx.temporal()
    results = [
        await replay(pool, client, msg_id, task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
                     for_s=ctx.settings.ANALYSIS_WEBHOOK_FOR_S)
        for msg_id in dict.fromkeys(ctx.args.msg_ids)
    ]  # fmt: skip
    ctx.out.emit(results, columns=("id", "call_id", "outcome", "detail"))
    return EXIT_OK if all(r["outcome"] == "started" for r in results) else EXIT_FAILED


CALLBACK_COLUMNS = ("id", "status", "due_at", "timezone", "phone", "attempts", "end_reason")


async def callbacks_list(ctx: Context) -> int:
    from api.domain.callbacks import masked, rows

    found = await rows(await ctx.pool(), ctx.args.status, None, None, max(1, ctx.args.limit))
    ctx.out.emit([{**masked(r, False), "attempts": len(r["attempts"])} for r in found],
                 columns=CALLBACK_COLUMNS)  # fmt: skip
    return EXIT_OK


async def callbacks_cancel(ctx: Context) -> int:
    """Cancel as DELETE /api/callbacks/{id} does; exits 1 when any is refused."""
    import core.callbacks as cb
    from api.domain.callbacks import cancel
    from api.errors import ApiError

    client, results = await ctx.temporal(), []
    for callback_id in dict.fromkeys(ctx.args.callback_ids):
        try:
            view = await cancel(client, callback_id, cb.CancelCallback(by="ops"))
            results.append({"id": callback_id, "outcome": view["status"], "detail": ""})
        except ApiError as exc:
            results.append({"id": callback_id, "outcome": "refused", "detail": exc.message})
    ctx.out.emit(results, columns=("id", "outcome", "detail"))
    return EXIT_OK if all(r["outcome"] != "refused" for r in results) else EXIT_FAILED


CAMPAIGN_COLUMNS = ("id", "name", "status", "total", "dialled", "answered", "remaining")


async def campaigns_list(ctx: Context) -> int:
    from api.domain.campaigns import rows

    found = await rows(await ctx.pool())
    ctx.out.emit([{"id": c["id"], "name": c["name"], "status": c["status"], **c["progress"]}
                  for c in found if not ctx.args.status or c["status"] == ctx.args.status],
                 columns=CAMPAIGN_COLUMNS)  # fmt: skip
    return EXIT_OK


async def _campaigns_signal(ctx: Context, what: str) -> int:
    """Pause, resume or cancel as POST /api/campaigns/{id}/<what> does; exits 1 when any is
    refused."""
    from api.domain.campaigns import signal
    from api.errors import ApiError

    client, pool, results = await ctx.temporal(), await ctx.pool(), []
    for campaign_id in dict.fromkeys(ctx.args.campaign_ids):
        try:
            view = await signal(client, pool, campaign_id, what)
            results.append({"id": campaign_id, "outcome": view["status"], "detail": ""})
        except ApiError as exc:
            results.append({"id": campaign_id, "outcome": "refused", "detail": exc.message})
    ctx.out.emit(results, columns=("id", "outcome", "detail"))
    return EXIT_OK if all(r["outcome"] != "refused" for r in results) else EXIT_FAILED


async def campaigns_pause(ctx: Context) -> int:
    return await _campaigns_signal(ctx, "pause")


async def campaigns_resume(ctx: Context) -> int:
    return await _campaigns_signal(ctx, "resume")


async def campaigns_cancel(ctx: Context) -> int:
    return await _campaigns_signal(ctx, "cancel")


async def telephony_setup(ctx: Context) -> int:
    import aiohttp
    from livekit.api import TwirpError

    from core.livekit import livekit_client
    from ops.telephony import ensure_telephony

    lk = livekit_client(ctx.settings)
    try:
        ctx.out.emit(await ensure_telephony(lk, ctx.settings))
    except TwirpError as exc:
        ctx.out.note(f"error: LiveKit refused: {exc.code}: {exc.message}")
        return EXIT_FAILED
    except aiohttp.ClientError as exc:
        ctx.out.note(f"error: LiveKit is not reachable at LIVEKIT_URL: {type(exc).__name__}")
        return EXIT_UNREACHABLE
    finally:
        await lk.aclose()
    return EXIT_OK


def _version(ctx: Context) -> Any:
    from temporalio.common import WorkerDeploymentVersion

    return WorkerDeploymentVersion(ctx.settings.WORKER_DEPLOYMENT_NAME, ctx.args.build_id)


async def deploy_status(ctx: Context) -> int:
    from ops.deploy import state

    got = await state(
        await ctx.temporal(), ctx.settings.WORKER_DEPLOYMENT_NAME, ctx.settings.TEMPORAL_TASK_QUEUE
    )
    if ctx.out.json:
        ctx.out.emit(got.as_dict())
        return EXIT_OK
    ramp = f" · ramping {got.ramping} {got.ramping_percent:g}%" if got.ramping else ""
    ctx.out.emit(
        [vars(v) for v in got.versions],
        columns=("build_id", "status", "running_calls", "drainage", "current_since"),
        title=f"deployment {got.name} · current {got.current or '(unversioned workers)'}{ramp}",
    )
    return EXIT_OK


async def deploy_promote(ctx: Context) -> int:
    from ops.deploy import DeployRefused, promote

    try:
        result = await promote(
            await ctx.temporal(),
            _version(ctx),
            task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
            wait_s=max(0.0, ctx.args.wait),
            take_over_unversioned=ctx.args.take_over_unversioned,
        )
    except DeployRefused as exc:
        ctx.out.note(f"refused: {exc}")
        return EXIT_FAILED
    ctx.out.emit(result)
    return EXIT_OK


async def deploy_wait_drained(ctx: Context) -> int:
    from ops.deploy import DeployRefused, wait_drained

    try:
        result = await wait_drained(
            await ctx.temporal(),
            None if ctx.args.unversioned else _version(ctx),
            task_queue=ctx.settings.TEMPORAL_TASK_QUEUE,
            timeout_s=ctx.args.timeout.total_seconds(),
        )
    except (DeployRefused, TimeoutError) as exc:
        ctx.out.note(f"not drained: {exc}")
        return EXIT_FAILED
    ctx.out.emit(result)
    return EXIT_OK


COMMANDS: dict[tuple[str, str], Callable[[Context], Awaitable[int]]] = {
    ("calls", "list"): calls_list,
    ("calls", "show"): calls_show,
    ("calls", "erase"): calls_erase,
    ("recordings", "failed"): recordings_failed,
    ("recordings", "retry"): recordings_retry,
    ("analysis", "rerun"): analysis_rerun,
    ("webhooks", "list"): webhooks_list,
    ("webhooks", "replay"): webhooks_replay,
    ("callbacks", "list"): callbacks_list,
    ("callbacks", "cancel"): callbacks_cancel,
    ("campaigns", "list"): campaigns_list,
    ("campaigns", "pause"): campaigns_pause,
    ("campaigns", "resume"): campaigns_resume,
    ("campaigns", "cancel"): campaigns_cancel,
    ("histories", "check"): histories_check,
    ("histories", "export"): histories_export,
    ("temporal", "setup"): temporal_setup,
    ("telephony", "setup"): telephony_setup,
    ("deploy", "status"): deploy_status,
    ("deploy", "promote"): deploy_promote,
    ("deploy", "wait-drained"): deploy_wait_drained,
}


# --- entry points ------------------------------------------------------------------------------


async def run(
    argv: list[str],
    *,
    settings: Settings | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Parse `argv`, run the command, return the exit code (never raises for unreachable
    services: says so on stderr and returns 3)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return int(exc.code or 0)
    settings = settings or settings_or_exit()
    out = Output(args.json or args.json_root, stdout, stderr)
    ctx = Context(settings, args, out)
    try:
        return await COMMANDS[(args.group, args.command)](ctx)
    except connect.Unreachable as exc:
        out.note(f"error: {exc}")
        return EXIT_UNREACHABLE
    except Exception as exc:
        gone = connect.unreachable_from(exc, settings)
        if gone is not None:
            out.note(f"error: {gone}")
            return EXIT_UNREACHABLE
        refused = connect.refusal(exc)
        if refused is None:
            raise  # a bug: keep its traceback
        out.note(f"error: {refused}")
        return EXIT_FAILED
    finally:
        await ctx.close()


def main(argv: list[str] | None = None) -> int:
    from core.temporal import exit_process

    exit_process(asyncio.run(run(sys.argv[1:] if argv is None else argv)))
