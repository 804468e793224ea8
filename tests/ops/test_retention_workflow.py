"""`RetentionWorkflow` alone on the time-skipping test server, with stand-ins for its activities
and for the erasure steps: each expired call gets its own `EraseCallWorkflow` child, a refused
erasure (the call still runs) is skipped without failing the sweep, and a full batch continues
as new until nothing expired is left."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.erase import (
    ERASE_CALL_ROWS,
    ERASE_RECORDING_OBJECT,
    ERASE_WORKFLOW_EXECUTIONS,
    ERR_CALL_STILL_RUNNING,
    STOP_RECORDING_PIPELINE,
    EraseCallInput,
    EraseRowsInput,
    PipelineStop,
)
from activities.retention import FIND_EXPIRED_CALLS, ExpiredCalls, ExpiredCallsQuery
from workflows.erase import EraseCallWorkflow
from workflows.retention import RetentionInput, RetentionResult, RetentionWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


class Store:
    """Calls by id; `busy` ones refuse erasure like a call whose pipeline still runs."""

    def __init__(self, expired: list[str], busy: set[str], live: frozenset[str] = frozenset()):
        self.expired = sorted(expired)
        self.busy = busy
        self.live = live  # listed, but their workflow still runs (never offered for erasure)
        self.queries: list[ExpiredCallsQuery] = []
        self.erased: list[EraseCallInput] = []

    @activity.defn(name=FIND_EXPIRED_CALLS)
    async def find(self, q: ExpiredCallsQuery) -> ExpiredCalls:
        """One page after the cursor, ordered by id (all these calls are equally old)."""
        self.queries.append(q)
        page = [c for c in self.expired if c > q.after_call_id][: q.limit]
        return ExpiredCalls(
            call_ids=[c for c in page if c not in self.live],
            live=[c for c in page if c in self.live],
            listed=len(page),
            next_created_at="2020-01-01T00:00:00+00:00" if page else "",
            next_call_id=page[-1] if page else "",
        )

    @activity.defn(name=STOP_RECORDING_PIPELINE)
    async def stop(self, req: EraseCallInput) -> PipelineStop:
        if req.call_id in self.busy:
            raise ApplicationError("still running", type=ERR_CALL_STILL_RUNNING, non_retryable=True)
        return PipelineStop("absent")

    @activity.defn(name=ERASE_WORKFLOW_EXECUTIONS)
    async def executions(self, req: EraseCallInput) -> int:
        if req.call_id in self.busy:
            raise ApplicationError("still running", type=ERR_CALL_STILL_RUNNING, non_retryable=True)
        return 2

    @activity.defn(name=ERASE_RECORDING_OBJECT)
    async def recording(self, req: EraseCallInput) -> bool:
        return True

    @activity.defn(name=ERASE_CALL_ROWS)
    async def rows(self, inp: EraseRowsInput) -> int:
        self.erased.append(inp.request)
        self.expired.remove(inp.request.call_id)
        return 3

    def activities(self) -> list[Any]:
        return [self.find, self.stop, self.executions, self.recording, self.rows]


async def sweep(env: WorkflowEnvironment, store: Store, batch: int) -> tuple[RetentionResult, Any]:
    queue = f"retention-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[RetentionWorkflow, EraseCallWorkflow],
        activities=store.activities(),
    ):
        handle = await env.client.start_workflow(
            RetentionWorkflow.run,
            RetentionInput(retention_days=30, batch=batch),
            id=queue,
            task_queue=queue,
        )
        result = await handle.result()
        if os.environ.get("OPS_RECORD_HISTORIES") == "1":  # refresh the committed corpus
            HISTORIES.mkdir(exist_ok=True)
            name = f"retention_batch{batch}"
            history = await env.client.get_workflow_handle(queue).fetch_history()
            (HISTORIES / f"{name}.json").write_text(history.to_json())
            child = await env.client.get_workflow_handle(
                f"erase-{store.erased[0].call_id}"
            ).fetch_history()
            (HISTORIES / f"{name}_erase.json").write_text(child.to_json())
        return result, await handle.describe()


async def test_each_expired_call_is_erased_and_a_refusal_is_skipped(
    temporal_test_env: WorkflowEnvironment,
) -> None:
    store = Store(["a" * 20, "b" * 20, "c" * 20], busy={"b" * 20})
    result, desc = await sweep(temporal_test_env, store, batch=10)
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert sorted(result.erased) == ["a" * 20, "c" * 20] and result.skipped == ["b" * 20]
    assert {r.requested_by for r in store.erased} == {"retention"}
    [q] = store.queries
    assert q.cutoff == result.cutoff and q.limit == 10


async def test_a_full_batch_continues_as_new_until_done(
    temporal_test_env: WorkflowEnvironment,
) -> None:
    ids = [f"{i:020d}" for i in range(5)]
    store = Store(ids, busy=set())
    result, _ = await sweep(temporal_test_env, store, batch=2)
    assert sorted(r.call_id for r in store.erased) == ids
    assert len(store.queries) == 3  # 2 + 2 + 1: the last, short batch ends the sweep
    assert result.erased == [ids[4]]


async def test_a_full_page_of_calls_it_cannot_erase_does_not_stop_the_sweep(
    temporal_test_env: WorkflowEnvironment,
) -> None:
    """The oldest calls are live or refused: the sweep pages past them and erases the rest."""
    tag = uuid.uuid4().hex[:10]  # erase-<id> is taken for good once erased: ids of its own
    head = [f"{tag}{i:010d}" for i in range(4)]
    rest = [f"{tag}{i:010d}" for i in range(4, 7)]
    store = Store(head + rest, busy=set(head[:2]), live=frozenset(head[2:]))
    await sweep(temporal_test_env, store, batch=2)
    assert sorted(r.call_id for r in store.erased) == rest
    assert store.expired == head  # still there: the next sweep tries them again
    assert [q.after_call_id for q in store.queries] == ["", head[1], head[3], rest[1]]
    assert len({q.cutoff for q in store.queries}) == 1  # one sweep, one cutoff


async def test_recorded_sweeps_replay_against_this_code(make_settings: Any) -> None:
    """Histories of `RetentionWorkflow` and its `EraseCallWorkflow` children recorded by the code
    above (`OPS_RECORD_HISTORIES=1`) still replay: a change to either must keep them so."""
    import io

    from ops.cli import run

    out = io.StringIO()
    code = await run(["histories", "check", "--files", str(HISTORIES), "--json"],
                     settings=make_settings(), stdout=out, stderr=io.StringIO())  # fmt: skip
    assert code == 0, out.getvalue()
    assert '"checked": 4' in out.getvalue()
