"""Histories of real runs (tests/histories/, from `python -m tests.workflows.record_histories`)
replay against the current workflow code without non-determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {p.name.split(".")[0] for p in HISTORIES}
    assert {"happy_path", "no_agent", "continue_as_new", "recording_fails_then_ops_retry",
            "healing"} <= names  # fmt: skip


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[CallWorkflow, RecordingWorkflow])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
