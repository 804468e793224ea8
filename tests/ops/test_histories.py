"""`ops histories check|export`: the pre-deploy replay check passes on the corpus and on the
cluster's real calls, fails on a history made by a deliberately different workflow, and an
exported history of a call (payload key set) holds none of its transcript's words."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import WorkflowExecution
from temporalio.worker import Worker

from core.models import RecordingInput, RecordingResult
from ops.histories import histories_still_there
from tests.api.conftest import ADMIN, ApiStack
from tests.ops.conftest import listed_then_one_deleted, ops, recorded_call, wait_call
from tests.workflows.test_replay import call_corpora


@workflow.defn(name="RecordingWorkflow", sandboxed=False)
class ImpostorRecordingWorkflow:
    """Same name and input as the real one, different commands: sleeps before it does anything."""

    @workflow.run
    async def run(self, inp: RecordingInput) -> RecordingResult:
        await workflow.sleep(timedelta(milliseconds=10))
        return RecordingResult(inp.call_id, "b", "k", 0, "", 0.0)


async def test_corpus_replays(api_stack: ApiStack) -> None:
    # The corpus was recorded without a payload key, so it is checked without one. A corpus
    # whose calls this code still runs (CallWorkflow is pinned: tests/workflows/test_replay.py).
    corpus = max(call_corpora())
    r = await ops(
        api_stack, "histories", "check", "--files", str(corpus), "--json", PAYLOAD_KEYS=None
    )
    assert r.code == 0, r.out
    assert r.json["ok"] and r.json["checked"] == len(list(corpus.glob("*.json")))


async def test_a_different_workflow_fails_the_check(api_stack: ApiStack, tmp_path: Path) -> None:
    queue = f"impostor-{uuid.uuid4().hex[:8]}"
    call_id = uuid.uuid4().hex[:20]
    async with Worker(api_stack.client, task_queue=queue, workflows=[ImpostorRecordingWorkflow]):
        await api_stack.client.execute_workflow(
            ImpostorRecordingWorkflow.run,
            RecordingInput(call_id, f"call-{call_id}", "EG_x", "http://x/y.ogg", 0, 0, 0),
            id=f"recording-{call_id}",
            task_queue=queue,
        )
    r = await ops(api_stack, "histories", "check", "--task-queue", queue, "--since", "1h", "--json")
    assert r.code == 1, r.out
    [failure] = r.json["failures"]
    assert failure["workflow_id"] == f"recording-{call_id}"
    assert "nondetermin" in failure["error"].lower(), failure

    exported = tmp_path / f"recording-{call_id}.json"
    r = await ops(api_stack, "histories", "export", call_id, "--recording", "-o", str(exported))
    assert r.code == 0, r.err
    r = await ops(api_stack, "histories", "check", "--files", str(exported))
    assert r.code == 1 and "do not deploy" in r.out, r.out


async def test_exported_history_holds_no_transcript_words(
    api_stack: ApiStack, tmp_path: Path
) -> None:
    words = ["Zanzibar", "periwinkle", "Quixotic", "marmalade"]
    lines = [
        ("customer", f"My cousin from {words[0]} wants the {words[1]} convertible."),
        ("assistant", f"A {words[2]} choice; it comes with {words[3]} leather seats."),
    ]
    call_id = await recorded_call(api_stack, "Bartholomew Secretname", lines)
    r = await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)
    assert r.status == 200, r.body
    await wait_call(api_stack, call_id, status="completed", recording_status="stored")
    await api_stack.client.get_workflow_handle(f"call-{call_id}").result()

    out = tmp_path / "call.json"
    r = await ops(api_stack, "histories", "export", call_id, "-o", str(out))
    assert r.code == 0, r.err
    text = out.read_text()
    events = json.loads(text)["events"]
    assert "CallWorkflow" in text and len(events) > 10  # the whole call, signals included
    for secret in [*words, "Bartholomew", "Secretname"]:
        assert secret.lower() not in text.lower(), secret
    # ...and, decoded with the key, it replays against this code.
    r = await ops(api_stack, "histories", "check", "--files", str(out), "--json")
    assert r.code == 0 and r.json["checked"] == 1, r.out

    # The cluster check covers this call and every other recent one on the task queue.
    r = await ops(api_stack, "histories", "check", "--since", "1h", "--json")
    assert r.code == 0, r.out
    assert r.json["checked"] >= 2


async def test_an_execution_deleted_after_the_listing_is_gone_not_a_failure(
    api_stack: ApiStack,
) -> None:
    """An erasure or retention can delete an execution between the cluster check's listing and
    the fetch of its history (CI saw NOT_FOUND fail the check): it is reported as gone, and the
    other histories are still fetched."""
    listed, deleted = await listed_then_one_deleted(api_stack.client)

    async def the_listing() -> AsyncIterator[WorkflowExecution]:
        for execution in listed:
            yield execution

    gone: list[str] = []
    histories = [h async for h in histories_still_there(api_stack.client, the_listing(), gone)]
    assert gone == [deleted.id]
    kept = [e.id for e in listed if e.id != deleted.id]
    assert [h.workflow_id for h in histories] == kept and histories[0].events
