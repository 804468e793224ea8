"""A redeploy: calls started on the dev server by the previous release's workflow code (checked
out from git at its commit into a temp dir, run by a worker in its own process) and finished by
the current code. A change that breaks running calls fails here with a workflow task that never
completes (non-determinism), before it is deployed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import models as m
from testkit.standins import StandIns, egress_file, until
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

ROOT = Path(__file__).resolve().parent.parent.parent
# Main when the issue-10 work started, main just before it landed (healing, local set-up), and
# release 3 (what landed with it: the code running when release 4 deploys). Add the next
# release's commit when it ships.
PREVIOUS_RELEASES = [
    "9c07ab5d2a32c3d7d6b6328115fee4778870ec6f",
    "47f7005c977a140d1177d3bf66619b6cb3325049",
    "e46d3976f67bfce920a9b345bcd2d276e1c48dc7",
]
# What the old side runs (those of them a release has): see `standins_module`.
PATHS = ["core", "workflows", "activities", "testkit", "tests/__init__.py",
         "tests/workflows/__init__.py", "tests/workflows/standins.py"]  # fmt: skip

# Run by the previous release's code: start calls, bring each mid-call, then stop the worker.
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
StandIns, until = standins.StandIns, standins.until

async def main(target, queue, n):
    client = await Client.connect(target)
    fakes = StandIns()
    ids = []
    async with Worker(client, task_queue=queue, workflows=[CallWorkflow, RecordingWorkflow],
                      activities=fakes.activities()):
        for i in range(n):
            call_id = m.new_call_id()
            cfg = m.CallConfig(livekit_url="ws://x", customer_join_timeout_s=3600,
                               continue_as_new_after_events=40 if i % 2 else 2000)
            h = await client.start_workflow(CallWorkflow.run, m.CallInput(call_id, "Ada", cfg),
                                            id=m.call_workflow_id(call_id), task_queue=queue)
            await h.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest("Ada"))
            await h.signal(CallWorkflow.agent_joined, m.AgentJoined(f"aj{i}", "agent-1"))
            await h.signal(CallWorkflow.transcript, m.TranscriptLine(f"g{i}", "assistant", "Recorded."))
            for j in range(12):
                await h.signal(CallWorkflow.transcript, m.TranscriptLine(f"l{i}-{j}", "customer", "hi"))
            await h.signal(CallWorkflow.agent_metrics, m.AgentMetrics(f"am{i}", 0.4, 0.3, 0.7))
            ids.append(call_id)
        await until(lambda: fakes.count("start_egress") >= n, 30)
        await asyncio.sleep(1)
    print(json.dumps(ids))

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


@pytest.mark.parametrize("commit", PREVIOUS_RELEASES)
async def test_calls_started_by_the_previous_release_finish_on_this_one(
    temporal_dev_env: WorkflowEnvironment, commit: str
) -> None:
    env = temporal_dev_env
    with tempfile.TemporaryDirectory() as tmp:
        if not checkout(commit, Path(tmp)):
            pytest.skip(f"release {commit[:7]} is not in this checkout's git history")
        queue = f"redeploy-{uuid.uuid4().hex[:8]}"
        target = env.client.service_client.config.target_host
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OLD_SIDE, target, queue, "4", standins_module(Path(tmp)),
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": tmp},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode == 0
        call_ids = json.loads(out.decode().strip().splitlines()[-1])

    fakes = StandIns(stop_reports="EGRESS_ENDING")
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[CallWorkflow, RecordingWorkflow],
        activities=fakes.activities(),
    ):
        handles = [env.client.get_workflow_handle(m.call_workflow_id(c)) for c in call_ids]
        for i, (handle, call_id) in enumerate(zip(handles, call_ids, strict=True)):
            for j in range(30):  # enough for the odd calls to continue as new
                await handle.signal(
                    CallWorkflow.transcript, m.TranscriptLine(f"n{i}-{j}", "assistant", "ok")
                )
                if j == 3:  # a turn's metrics mid-stream: a change to what they emit shows
                    await handle.signal(
                        CallWorkflow.agent_metrics, m.AgentMetrics(f"am-new{i}", 0.5, 0.2, 0.6)
                    )
            await handle.signal(
                CallWorkflow.participant_left,
                m.ParticipantLeft(f"pl{i}", m.customer_identity(call_id), "customer"),
            )
        await until(lambda: fakes.count("stop_egress") >= len(call_ids), 60, "every stop")
        for handle, call_id in zip(handles, call_ids, strict=True):
            state = await handle.query(CallWorkflow.get_state)
            assert state.egress is not None
            egress_id = state.egress.egress_id
            await handle.signal(
                CallWorkflow.egress_ended,
                m.EgressUpdate(
                    f"ee-{call_id}", egress_id, "EGRESS_COMPLETE", file=egress_file(call_id)
                ),
            )
        results = [await asyncio.wait_for(h.result(), 120) for h in handles]
    for result in results:
        assert result["status"] == "completed" and result["line_count"] >= 43
        assert result["recording_status"] in ("stored", "uploading")
