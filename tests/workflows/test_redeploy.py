"""A redeploy with Worker Versioning, on the dev server, from the previous release's code.

The previous release (checked out from git at its commit into a temp dir) runs its unversioned
worker in its own process and starts calls; this code's worker joins the same task queue as a
Worker Deployment Version. Then, as docs/deploy.md says:

1. bridge: the Deployment has no Current Version; new calls are pinned to the new version at
   start (the API's PIN_NEW_CALLS_TO) and the previous release's calls finish on its own worker;
2. `promote` once they have drained: calls started after it are pinned by CallWorkflow's own
   behavior to the version that was current when they started;
3. a later version promoted beside it never runs a task of a call pinned to another version,
   while a long-lived workflow (a callback asleep for days: auto-upgrade) runs its next task on
   the later version.

Who ran each workflow task is read from the history (the identity on every
WorkflowTaskCompleted), not inferred. The previous release's calls never reach this code, so a
change to CallWorkflow needs no patch for them: the replay corpus (test_replay.py) says which
histories this code must still replay.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment

import core.callbacks as cb
from activities import types as act
from core import models as m
from ops.deploy import promote, wait_drained, wait_for_pollers
from testkit.callbacks import CallbackStandIns
from testkit.standins import StandIns, egress_file, until
from testkit.versioning import runs_on, start_waiting_call, task_workers, versioned_worker
from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow

ROOT = Path(__file__).resolve().parent.parent.parent
# The releases whose calls may be running when this code deploys: release 4, the last
# unversioned one (the bridge), and release 5, the first pinned one (a plain promote). Move
# PINNED_RELEASE to each release's commit once it ships.
PREVIOUS_RELEASE = "c3c8012"
PINNED_RELEASE = "755b6d2"
# What the old side runs (those of them a release has): see `standins_module`.
PATHS = ["core", "workflows", "activities", "testkit", "tests/__init__.py",
         "tests/workflows/__init__.py", "tests/workflows/standins.py"]  # fmt: skip
OLD_IDENTITY = "previous-release"
# What a recording pipeline runs (RecordingWorkflow, auto-upgrade: it moves to the Current
# Version wherever the call that started it runs).
PIPELINE_ACTIVITIES = {
    act.DOWNLOAD_AND_STORE_RECORDING, act.FIND_STAGED_RECORDING, act.DELETE_RECORDING_SEGMENTS,
    act.RECORD_RECORDING, act.APPEND_CALL_EVENTS,
}  # fmt: skip

# Run by the previous release's code, as its unversioned worker: start calls and bring each
# mid-call, print their ids; on "finish" (stdin) end them, print their results; keep polling
# throughout, as the old workers do during a deploy.
OLD_SIDE = """
import asyncio, importlib, json, os, sys
from temporalio.client import Client
from temporalio.worker import Worker
from core import models as m
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

# The release's own stand-ins, never this checkout's (on sys.path too, after the release's tree).
standins = importlib.import_module(sys.argv[4])
for module in (standins, sys.modules["workflows.call"]):
    assert os.path.realpath(module.__file__).startswith(os.path.realpath(".")), module
StandIns, until, egress_file = standins.StandIns, standins.until, standins.egress_file

async def main(target, queue, n):
    client = await Client.connect(target)
    fakes = StandIns(stop_reports="EGRESS_ENDING")
    handles = []
    config = None
    if len(sys.argv) > 6:  # "deployment:build": a versioned worker, as a pinned release runs
        from temporalio.common import WorkerDeploymentVersion
        from temporalio.worker import WorkerDeploymentConfig
        name, build = sys.argv[6].split(":")
        config = WorkerDeploymentConfig(version=WorkerDeploymentVersion(name, build),
                                        use_worker_versioning=True)
    async with Worker(client, task_queue=queue, workflows=[CallWorkflow, RecordingWorkflow],
                      activities=fakes.activities(), identity=sys.argv[5],
                      deployment_config=config):
        if config is not None:  # polling: wait until the deploy made this version current
            print("polling", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i in range(n):
            call_id = m.new_call_id()
            cfg = m.CallConfig(livekit_url="ws://x", customer_join_timeout_s=3600, customer_rejoin_grace_s=0,
                               continue_as_new_after_events=40 if i % 2 else 2000)
            h = await client.start_workflow(CallWorkflow.run, m.CallInput(call_id, "Ada", cfg),
                                            id=m.call_workflow_id(call_id), task_queue=queue)
            await h.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest("Ada"))
            await h.signal(CallWorkflow.agent_joined, m.AgentJoined(f"aj{i}", "agent-1"))
            # The consent announcement: recording starts once it is said.
            await h.signal(CallWorkflow.transcript, m.TranscriptLine(f"g{i}", "assistant", "Recorded."))
            for j in range(6):
                await h.signal(CallWorkflow.transcript, m.TranscriptLine(f"l{i}-{j}", "customer", "hi"))
            handles.append((call_id, h))
        await until(lambda: fakes.count("start_egress") >= n, 30)
        print(json.dumps([c for c, _ in handles]), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i, (call_id, h) in enumerate(handles):
            for j in range(30):  # enough for the odd calls to continue as new
                await h.signal(CallWorkflow.transcript, m.TranscriptLine(f"n{i}-{j}", "assistant", "ok"))
            await h.signal(CallWorkflow.participant_left,
                           m.ParticipantLeft(f"pl{i}", m.customer_identity(call_id), "customer"))
        await until(lambda: fakes.count("stop_egress") >= n, 60)
        results = []
        for call_id, h in handles:
            egress = (await h.query(CallWorkflow.get_state)).egress.egress_id
            await h.signal(CallWorkflow.egress_ended, m.EgressUpdate(
                f"ee-{call_id}", egress, "EGRESS_COMPLETE", file=egress_file(call_id)))
            r = await asyncio.wait_for(h.result(), 120)
            results.append({"status": r.status, "lines": r.line_count, "recording": r.recording_status})
    print(json.dumps(results), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
# The release's core may predate core.temporal.exit_process: the same, by hand (no teardown,
# which the Temporal core's threads can abort).
sys.stdout.flush()
os._exit(0)
"""


def checkout(commit: str, into: Path) -> bool:
    """The release's files at `commit` into `into` (those of PATHS it has); False when git or
    the commit is missing."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-tree", "--name-only", commit, "--", *PATHS],
            capture_output=True,
            check=True,
            text=True,
            timeout=60,
        ).stdout.split()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, *listed],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    path = into / "release.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return True


def standins_module(release: Path) -> str:
    """Where a release keeps its stand-in activities: testkit/, or tests/ before testkit/."""
    return "testkit.standins" if (release / "testkit").is_dir() else "tests.workflows.standins"


async def talk_then_hang_up(handle: WorkflowHandle, fakes: StandIns) -> None:
    """The customer joins, the agent greets (recording starts), the customer leaves, the
    egress ends: the call completes. `fakes`: the stand-ins of the worker it runs on."""
    call_id = handle.id.removeprefix("call-")
    starts = fakes.count("start_egress")
    await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest("Ada"))
    await handle.signal(CallWorkflow.agent_joined, m.AgentJoined(f"aj-{call_id}", "agent-1"))
    await handle.signal(
        CallWorkflow.transcript, m.TranscriptLine(f"g-{call_id}", "assistant", "Recorded.")
    )
    await until(lambda: fakes.count("start_egress") > starts, 30, "the egress")
    await hang_up(handle, fakes)


async def hang_up(handle: WorkflowHandle, fakes: StandIns) -> None:
    """The customer leaves, the egress ends: the call completes (`fakes`: its worker's)."""
    stops = fakes.count("stop_egress")
    call_id = handle.id.removeprefix("call-")
    await handle.signal(
        CallWorkflow.participant_left,
        m.ParticipantLeft(f"pl-{call_id}", m.customer_identity(call_id), "customer"),
    )
    await until(lambda: fakes.count("stop_egress") > stops, 30, "the stop")
    state = await handle.query(CallWorkflow.get_state)
    assert state.egress is not None
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate(
            f"ee-{call_id}", state.egress.egress_id, "EGRESS_COMPLETE", file=egress_file(call_id)
        ),
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed"


def a_zone_at_midday() -> str:
    """An IANA zone whose local time is now about noon: a callback due now is inside its
    calling window whatever the hour this test runs at."""
    offset = max(-11, min(12, 12 - time.gmtime().tm_hour))  # Etc/GMT's sign is inverted
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"


async def run_old_side(
    client: Any, tmp: Path, queue: str, version: WorkerDeploymentVersion | None = None
) -> asyncio.subprocess.Process:
    """The previous release's worker (OLD_SIDE) in its own process, on its own code."""
    extra = [f"{version.deployment_name}:{version.build_id}"] if version else []
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", OLD_SIDE, client.service_client.config.target_host, queue, "2",
        standins_module(tmp), OLD_IDENTITY, *extra,
        cwd=tmp, env={**os.environ, "PYTHONPATH": str(tmp)},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish_old_calls(old: asyncio.subprocess.Process) -> None:
    """Tell the old side to end its calls; each completed with its lines and its recording."""
    assert old.stdin is not None and old.stdout is not None
    old.stdin.write(b"finish\n")
    await old.stdin.drain()
    results = json.loads(await asyncio.wait_for(old.stdout.readline(), 180))
    for r in results:
        assert r["status"] == "completed" and r["lines"] >= 37, r
        assert r["recording"] in ("stored", "uploading"), r
    assert await asyncio.wait_for(old.wait(), 30) == 0


async def test_pinned_release_calls_finish_on_its_version_after_this_one_is_promoted(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """Release 5 onwards: the running release is a pinned Worker Deployment Version. This code
    deploys as the next version and is promoted at once (no bridge): the running calls stay on
    the previous release's workers to their end, new calls start on this code."""
    client = temporal_dev_env.client
    queue = f"redeploy-{uuid.uuid4().hex[:8]}"
    deployment = f"redeploy-{uuid.uuid4().hex[:8]}"
    previous = WorkerDeploymentVersion(deployment, "release-5")
    new = WorkerDeploymentVersion(deployment, "new")
    with tempfile.TemporaryDirectory() as tmp:
        if not checkout(PINNED_RELEASE, Path(tmp)):
            pytest.skip(f"release {PINNED_RELEASE} is not in this checkout's git history")
        old = await run_old_side(client, Path(tmp), queue, previous)
        assert old.stdin is not None and old.stdout is not None
        try:
            assert (await asyncio.wait_for(old.stdout.readline(), 120)).strip() == b"polling"
            await promote(client, previous, task_queue=queue, wait_s=30)  # as it runs today
            old.stdin.write(b"go\n")
            await old.stdin.drain()
            old_ids = json.loads(await asyncio.wait_for(old.stdout.readline(), 120))
            old_calls = [client.get_workflow_handle(m.call_workflow_id(c)) for c in old_ids]
            fakes = StandIns()
            async with versioned_worker(client, queue, new, fakes, identity="new"):
                await promote(client, new, task_queue=queue, wait_s=30)
                fresh = await start_waiting_call(client, queue)
                assert await runs_on(fresh) == ("pinned", "new")
                await finish_old_calls(old)
                await talk_then_hang_up(fresh, fakes)
        finally:
            if old.returncode is None:
                old.kill()
                await old.wait()
    for handle in old_calls:  # a continued-as-new run among them
        assert await runs_on(handle) == ("pinned", "release-5")
        assert await task_workers(handle) == {OLD_IDENTITY}
    # The old calls' own activities ran on the old side; only their recording pipelines (an
    # auto-upgrade workflow) may have moved to this version since its promotion.
    touched = {name for name, args in fakes.calls.items() if any(c in str(args) for c in old_ids)}
    assert touched <= PIPELINE_ACTIVITIES, touched
    assert await task_workers(fresh) == {"new"}


async def test_previous_release_calls_finish_on_its_worker_new_calls_are_pinned(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    env = temporal_dev_env
    client = env.client
    queue = f"redeploy-{uuid.uuid4().hex[:8]}"
    deployment = f"redeploy-{uuid.uuid4().hex[:8]}"
    new, later = (
        WorkerDeploymentVersion(deployment, "new"),
        WorkerDeploymentVersion(deployment, "later"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        if not checkout(PREVIOUS_RELEASE, Path(tmp)):
            pytest.skip(f"release {PREVIOUS_RELEASE} is not in this checkout's git history")
        old = await run_old_side(client, Path(tmp), queue)
        assert old.stdin is not None and old.stdout is not None
        try:
            old_ids = json.loads(await asyncio.wait_for(old.stdout.readline(), 120))
            old_calls = [client.get_workflow_handle(m.call_workflow_id(c)) for c in old_ids]
            new_fakes, later_fakes = StandIns(), StandIns()
            async with versioned_worker(client, queue, new, new_fakes, identity="new"):
                await wait_for_pollers(client, new, 30)  # pinning to a version needs that
                # 1. Bridge: no Current Version; the API pins new calls to the new version.
                bridged = await start_waiting_call(client, queue, pinned_to=new)
                assert await runs_on(bridged) == ("pinned", "new")
                await finish_old_calls(old)
        finally:
            if old.returncode is None:
                old.kill()
                await old.wait()
    # The previous release's calls (a continued-as-new run among them) ran on its worker only.
    for handle in old_calls:
        assert await runs_on(handle) == ("unspecified", None)
        assert await task_workers(handle) == {OLD_IDENTITY}
    assert not {c for c in old_ids if any(c in str(a) for a in new_fakes.calls.values())}

    new_callbacks, later_callbacks = CallbackStandIns(client), CallbackStandIns(client)
    async with (
        versioned_worker(client, queue, new, new_fakes, identity="new", callbacks=new_callbacks),
        versioned_worker(
            client, queue, later, later_fakes, identity="later", callbacks=later_callbacks
        ),
    ):
        # 2. Drained: promote; a call started now is pinned by its own behavior.
        await wait_drained(client, None, task_queue=queue, timeout_s=30)
        await promote(client, new, task_queue=queue, wait_s=30)
        pinned = await start_waiting_call(client, queue)
        assert await runs_on(pinned) == ("pinned", "new")
        # A callback two days out goes to sleep on the version current now.
        zone, callback_id = a_zone_at_midday(), f"cb{uuid.uuid4().hex[:12]}"
        callback = await client.start_workflow(
            CallbackWorkflow.run,
            cb.CallbackRequest(callback_id, "+15551230001", time.time() + 2 * 86400, zone),
            id=cb.callback_workflow_id(callback_id),
            task_queue=queue,
        )
        await until(lambda: bool(new_callbacks.rows), 30, "the callback's row")
        assert await runs_on(callback) == ("auto_upgrade", "new")
        # 3. A later version becomes current: the pinned calls stay where they started.
        await promote(client, later, task_queue=queue, wait_s=30)
        newest = await start_waiting_call(client, queue)
        assert await runs_on(newest) == ("pinned", "later")
        # ... and the sleeping callback, moved to now, wakes and dials on the later version.
        await callback.execute_update(CallbackWorkflow.reschedule, cb.Reschedule(time.time()))
        done = await asyncio.wait_for(callback.result(), 60)
        assert done.status == cb.CallbackStatus.COMPLETED, done
        assert len(later_callbacks.dials) == 1 and not new_callbacks.dials
        assert await runs_on(callback) == ("auto_upgrade", "later")
        assert await task_workers(callback) == {"new", "later"}
        await talk_then_hang_up(pinned, new_fakes)
        await talk_then_hang_up(bridged, new_fakes)
        await newest.terminate("test over")
    for handle in (bridged, pinned):
        assert await runs_on(handle) == ("pinned", "new")
        assert await task_workers(handle) == {"new"}
    assert later_fakes.count("start_egress") == later_fakes.count("stop_egress") == 0
