"""Activities of `EraseCallWorkflow`: remove everything a call left behind, idempotently.

- `stop_recording_pipeline`: refuses (non-retryable) while the call runs; a recording pipeline
  still uploading, retrying or waiting for ops is asked to cancel, and waited for (heartbeating,
  at most `pipeline_stop_wait_s`) until it has closed. A cancelled pipeline closes only once its
  upload confirmed it stopped (`workflows.recording`), so after `cancelled` nothing of it can
  write. One that does not close in time (its workflow stuck, say) is terminated, the last
  resort: a write already sent may then still land, so the answer tells the workflow to sweep
  the objects again after `sweep_again_after_s` (the upload's heartbeat timeout and throttle:
  by then a worker that was uploading has learnt it must stop, or is dead).
- `erase_workflow_executions`: delete the closed `call-<id>`, `recording-<id>`, `analysis-<id>`
  and `webhook-<message>` executions (every run, continue-as-new included) from Temporal; a
  running analysis or delivery is terminated first; refuses (non-retryable) while the call
  runs; a pipeline still running (an erasure started before release 4) is stopped as above.
- `erase_recording_object`: delete every copy of the recording, stored and staging, every
  segment, every version of each in a versioned bucket (a missing object is fine).
- `erase_call_rows`: in one transaction, delete the call's rows from every table that has a
  `call_id` column and record the erasure (who, when, how much) in `erasures`.

Each can run again after a crash and do no harm: deleting what is gone is a no-op, and the
erasure record is written once (ON CONFLICT DO NOTHING) in the same transaction as the deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.types import (
    ERASE_CALL_ROWS,
    ERASE_RECORDING_OBJECT,
    ERASE_WORKFLOW_EXECUTIONS,
    ERR_CALL_STILL_RUNNING,
    STOP_RECORDING_PIPELINE,
    EraseRowsInput,
    PipelineStop,
)
from core.models import EraseCallInput, call_workflow_id, recording_workflow_id

# Above what a cancelled pipeline can need: the upload learns of it at its next heartbeat
# (sent every 5 s by worker.py, at most 60 s by a worker on the SDK's default), or the server
# times a dead worker's attempt out (150 s); then its S3 calls finish and it reports.
PIPELINE_STOP_WAIT_S = 240.0
# After a forced stop: the upload's heartbeat timeout (150 s) and the SDK's longest throttle
# (60 s): by then a worker still uploading has been told to stop (or is dead).
SWEEP_AGAIN_AFTER_S = 210.0
# While running, old erasures (no stop step) wait less: their step times out at 2 minutes.
LEGACY_STOP_WAIT_S = 90.0
POLL_S = 1.0
T = TypeVar("T")


class EraseActivities:
    """Built once by the worker with its connection pool, S3 client and Temporal client."""

    def __init__(  # type: ignore[no-untyped-def]
        self,
        pool,
        minio,
        client,
        bucket: str,
        staging_bucket: str = "egress",
        *,
        pipeline_stop_wait_s: float = PIPELINE_STOP_WAIT_S,
        sweep_again_after_s: float = SWEEP_AGAIN_AFTER_S,
    ) -> None:
        self.pool = pool
        self.minio = minio
        self.client = client
        self.bucket = bucket
        self.staging_bucket = staging_bucket
        self.pipeline_stop_wait_s = pipeline_stop_wait_s
        self.sweep_again_after_s = sweep_again_after_s

    def activities(self) -> list[Callable[..., Any]]:
        """Every step `EraseCallWorkflow` runs, in its order (what a worker registers)."""
        return [
            self.stop_recording_pipeline,
            self.erase_workflow_executions,
            self.erase_recording_object,
            self.erase_call_rows,
        ]

    @activity.defn(name=STOP_RECORDING_PIPELINE)
    async def stop_recording_pipeline(self, req: EraseCallInput) -> PipelineStop:
        """Close the call's recording pipeline so that nothing of it can write any more."""
        await self._refuse_while_the_call_runs(req)
        return await self._stop_pipeline(req, self.pipeline_stop_wait_s)

    async def _refuse_while_the_call_runs(self, req: EraseCallInput) -> None:
        try:
            desc = await self.client.get_workflow_handle(call_workflow_id(req.call_id)).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return
        if desc.status == WorkflowExecutionStatus.RUNNING:
            raise ApplicationError(
                f"still running: {desc.id}", type=ERR_CALL_STILL_RUNNING, non_retryable=True
            )

    async def _stop_pipeline(self, req: EraseCallInput, wait_s: float) -> PipelineStop:
        """Cancel every running run of `recording-<id>` and wait until none runs; terminate
        one still running after `wait_s` (a new run an ops retry started is cancelled too)."""
        wid = recording_workflow_id(req.call_id)
        reason = f"erasure requested by {req.requested_by}"
        deadline = time.monotonic() + wait_s
        asked: set[str] = set()
        while True:
            try:
                desc = await self.client.get_workflow_handle(wid).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                return PipelineStop("cancelled" if asked else "absent")
            status = desc.status.name if desc.status else ""
            if desc.status != WorkflowExecutionStatus.RUNNING:
                how = "cancelled" if asked else "closed"
                activity.logger.info(
                    "recording_pipeline_closed call_id=%s how=%s status=%s run_id=%s",
                    req.call_id, how, status, desc.run_id,
                )  # fmt: skip
                return PipelineStop(how, desc.run_id)
            run = self.client.get_workflow_handle(wid, run_id=desc.run_id)
            if desc.run_id not in asked:
                asked.add(desc.run_id)
                await _ignore_not_found(run.cancel(reason=reason))
                activity.logger.info(
                    "recording_pipeline_cancel_requested call_id=%s by=%s run_id=%s",
                    req.call_id, req.requested_by, desc.run_id,
                )  # fmt: skip
            elif time.monotonic() >= deadline:
                await _ignore_not_found(
                    run.terminate(reason=f"{reason}; not stopped after {wait_s:.0f} s")
                )
                activity.logger.warning(
                    "recording_pipeline_terminated call_id=%s run_id=%s waited_s=%.0f",
                    req.call_id, desc.run_id, wait_s,
                )  # fmt: skip
                return PipelineStop("terminated", desc.run_id, self.sweep_again_after_s)
            activity.heartbeat(desc.run_id)
            await asyncio.sleep(POLL_S)

    @activity.defn(name=ERASE_WORKFLOW_EXECUTIONS)
    async def erase_workflow_executions(self, req: EraseCallInput) -> int:
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

        ids = [call_workflow_id(req.call_id), recording_workflow_id(req.call_id)]
        # After the call: its analysis and each webhook message's delivery (workflows/analysis.py)
        ids.append(f"analysis-{req.call_id}")
        ids += [f"webhook-{r['id']}" for r in await self.pool.fetch(
            "SELECT id FROM webhook_deliveries WHERE call_id = $1", req.call_id)]  # fmt: skip
        query = " OR ".join(f"WorkflowId = '{wid}'" for wid in ids)
        runs = []
        async for e in self.client.list_workflows(query):
            activity.heartbeat(e.id)  # a long listing (many continue-as-new runs) is progress
            runs.append((e.id, e.run_id, e.status))
        # Visibility can lag behind: also ask for the latest run of each id directly.
        for wid in ids:
            try:
                desc = await self.client.get_workflow_handle(wid).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            if (wid, desc.run_id, desc.status) not in runs:
                runs.append((wid, desc.run_id, desc.status))
        running = {wid for wid, _, status in runs if status == WorkflowExecutionStatus.RUNNING}
        if call_workflow_id(req.call_id) in running:
            raise ApplicationError(
                f"still running: {', '.join(sorted(running))}",
                type=ERR_CALL_STILL_RUNNING,
                non_retryable=True,
            )
        for wid in running - {call_workflow_id(req.call_id), recording_workflow_id(req.call_id)}:
            # An analysis or a delivery holds nothing: stopped at once (and it stores nothing
            # for an erased call: activities/analysis.py).
            with contextlib.suppress(RPCError):
                await self.client.get_workflow_handle(wid).terminate("the call is being erased")
        if recording_workflow_id(req.call_id) in running:
            # The call is over but its recording pipeline still runs (an erasure from before
            # `stop_recording_pipeline`, or a run an ops retry started since): stop it first,
            # so that nothing of it writes after the objects are gone.
            await self._stop_pipeline(req, min(self.pipeline_stop_wait_s, LEGACY_STOP_WAIT_S))
        deleted = 0
        for wid, run_id, _ in runs:
            activity.heartbeat(wid)
            try:
                await self.client.workflow_service.delete_workflow_execution(
                    DeleteWorkflowExecutionRequest(
                        namespace=self.client.namespace,
                        workflow_execution=WorkflowExecution(workflow_id=wid, run_id=run_id or ""),
                    )
                )
                deleted += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        activity.logger.info(
            "erase_workflow_executions call_id=%s deleted=%d", req.call_id, deleted
        )
        return deleted

    @activity.defn(name=ERASE_RECORDING_OBJECT)
    async def erase_recording_object(self, req: EraseCallInput) -> bool:
        """Delete every copy of the call's recording: stored and staging, every segment, and
        in a versioned bucket every version of each (and its delete markers), so that nothing
        can be restored afterwards.

        In each bucket (recordings, the egress staging bucket, and the bucket its row names):
        every object under `conversations/<call_id>/` and the single key
        `conversations/<call_id>.ogg`. True when anything existed. Heartbeats before each S3
        request (each listing and each delete), so a slow S3 never looks like a dead worker. A refusal S3 will
        repeat (AccessDenied) is StorageRefused (non-retryable), naming bucket and key.
        """
        from core.models import single_recording_object_key

        row = await self.pool.fetchrow(
            "SELECT bucket, object_key, egress_id FROM recordings WHERE call_id = $1", req.call_id
        )
        targets: dict[str, set[str]] = {}
        for bucket in (self.bucket, self.staging_bucket):
            targets.setdefault(bucket, set()).add(single_recording_object_key(req.call_id))
        if row and row["bucket"] and row["object_key"]:
            targets.setdefault(row["bucket"], set()).add(row["object_key"])
        if row and row["egress_id"]:  # the manifest an Egress writes when backup storage is used
            targets[self.staging_bucket].add(f"conversations/{row['egress_id']}.json")
        prefix = f"conversations/{req.call_id}/"
        deleted = 0
        for bucket, keys in targets.items():
            listed: set[tuple[str, str | None]] = set()
            for p in [prefix, *sorted(keys)]:
                activity.heartbeat(f"{bucket}/{p}")  # one S3 request per heartbeat
                found = await self._s3(
                    req, "list object versions", bucket, p, self._versions, bucket, p, prefix, keys
                )
                if found is None:
                    break  # no such bucket
                listed.update(found)
            for key, version in sorted(listed, key=lambda kv: (kv[0], kv[1] or "")):
                activity.heartbeat(f"{bucket}/{key}")
                await self._s3(
                    req, "remove object", bucket, key, self._remove, bucket, key, version
                )
                deleted += 1
        activity.logger.info(
            "erase_recording_object call_id=%s objects_deleted=%d", req.call_id, deleted
        )
        return deleted > 0

    def _versions(
        self, bucket: str, listing: str, prefix: str, keys: set[str]
    ) -> list[tuple[str, str | None]] | None:
        """Every version (delete markers included) listed under `listing` that is under
        `prefix` or one of `keys`, as (key, version id) (blocking; an unversioned bucket lists
        each object once, version "null" or none). None when the bucket does not exist."""
        from minio.error import S3Error

        try:
            return [
                (o.object_name or "", o.version_id)
                for o in self.minio.list_objects(
                    bucket, prefix=listing, recursive=True, include_version=True
                )
                if (o.object_name or "").startswith(prefix) or o.object_name in keys
            ]
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise
            return None

    def _remove(self, bucket: str, key: str, version: str | None) -> None:
        """Delete one version of `key` (blocking): that version itself, never a new delete
        marker over it. Gone already is fine (S3 answers a delete of nothing with success)."""
        self.minio.remove_object(bucket, key, version_id=version)

    async def _s3(
        self,
        req: EraseCallInput,
        what: str,
        bucket: str,
        key: str,
        fn: Callable[..., T],
        *args: Any,
    ) -> T:
        """`fn(*args)` in a thread; its S3 failure as StorageRefused or StorageUnavailable."""
        import urllib3
        from minio.error import MinioException

        from activities.multipart import storage_error

        try:
            return await asyncio.to_thread(fn, *args)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            err = storage_error(what, exc, bucket, key)
            activity.logger.warning(
                "erase_recording_object_failed call_id=%s bucket=%s key=%s error=%s",
                req.call_id, bucket, key, err.type,
            )  # fmt: skip
            raise err from exc

    @activity.defn(name=ERASE_CALL_ROWS)
    async def erase_call_rows(self, inp: EraseRowsInput) -> int:
        req = inp.request
        async with self.pool.acquire() as conn, conn.transaction():
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_name = 'call_id' "
                "AND table_name <> 'erasures' ORDER BY table_name = 'calls', table_name"
            )
            deleted = 0
            for t in tables:
                status = await conn.execute(
                    f'DELETE FROM "{t["table_name"]}" WHERE call_id = $1', req.call_id
                )
                deleted += int(status.split()[-1])
            await conn.execute(
                "INSERT INTO erasures (call_id, requested_by, requested_at, rows_deleted, "
                "object_deleted, executions_deleted) VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6) "
                "ON CONFLICT (call_id) DO NOTHING",
                req.call_id,
                req.requested_by,
                req.requested_at,
                deleted,
                inp.object_deleted,
                inp.executions_deleted,
            )
            # A retried run deletes nothing; report what the first run recorded.
            deleted = await conn.fetchval(
                "SELECT rows_deleted FROM erasures WHERE call_id = $1", req.call_id
            )
        activity.logger.info("erase_call_rows call_id=%s rows=%d", req.call_id, deleted)
        return deleted


async def _ignore_not_found(call: Awaitable[None]) -> None:
    """A run that ended (or was deleted) meanwhile needs no stopping."""
    try:
        await call
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
