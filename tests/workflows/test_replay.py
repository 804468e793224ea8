"""The versioning net: the histories of the corpus (tests/histories/, appended per release by
`python -m tests.workflows.record_histories`, never rewritten) replay against the current
workflow code without non-determinism, also through the production data converter (the payload
codec), so a history exported from an encrypted cluster can be checked the same way.

Which ones: CallWorkflow is pinned (Worker Versioning), so its histories replay only from the
corpora listed in tests/histories/CALL_WORKFLOW_CORPORA (the calls this code can run); the
histories of every other workflow (auto-upgrade: they move to new code mid-run) replay from
every corpus."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path

import pytest
import temporalio.converter
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core import models as m
from core.codec import EncryptionCodec
from workflows.analysis import AnalysisWorkflow, WebhookWorkflow
from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.desk import DeskWorkflow
from workflows.recording import RecordingWorkflow

CORPUS = Path(__file__).resolve().parent.parent / "histories"
ALL_HISTORIES = sorted(CORPUS.rglob("*.json"))
CALL_CORPORA_FILE = CORPUS / "CALL_WORKFLOW_CORPORA"


def call_corpora() -> set[Path]:
    """The corpus directories listed in CALL_WORKFLOW_CORPORA ("." is the top level)."""
    lines = (line.split("#", 1)[0].strip() for line in CALL_CORPORA_FILE.read_text().splitlines())
    return {(CORPUS / line).resolve() for line in lines if line}


def workflow_type(path: Path) -> str:
    """The workflow type of an exported history (its first event's)."""
    first = json.loads(path.read_text())["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def replayed(paths: list[Path]) -> list[Path]:
    """The histories the current code must replay: CallWorkflow's from the listed corpora only,
    every other workflow's from all."""
    listed = call_corpora()
    return [p for p in paths if workflow_type(p) != m.WORKFLOW_CALL or p.parent.resolve() in listed]


HISTORIES = replayed(ALL_HISTORIES)


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CORPUS).with_suffix("")) for p in paths]


def test_histories_are_recorded() -> None:
    names = {p.name.split(".")[0] for p in ALL_HISTORIES}
    assert {"happy_path", "no_agent", "continue_as_new", "recording_fails_then_ops_retry",
            "healing"} <= names  # fmt: skip
    release_2 = {p.name.split(".")[0] for p in (CORPUS / "release-2").glob("*.json")}
    # A scenario for every patched branch of release 2, busy signals, continue-as-new and an
    # outage of PostgreSQL.
    assert {
        "end_wins_over_continue_as_new",
        "egress_ended_during_stop",
        "segments_after_mid_call_failure",
        "consent_withdrawn",
        "lost_egress_found_in_staging",
        "recording_waits_for_ops_then_retry",
        "recording_given_up",
        "busy_signals_continue_as_new",
        "database_down_long_call",
    } <= release_2
    # Release 3 (what landed: release 2 with healing and the local set-up): the same scenarios,
    # recorded with every patch marker of today's code, the egress clock and poll retries too.
    release_3 = {p.name.split(".")[0] for p in (CORPUS / "release-3").glob("*.json")}
    assert (
        release_2 - {"recording_fails_then_ops_retry"}
        | {
            "healing",
            "egress_clock_and_poll_retries",
        }
        <= release_3
    )
    # Release 4: every scenario again with this release's markers, plus the room gone (its
    # signal and a dispatch refused RoomGone), erasure cancelling a pipeline, a line resent
    # after its id was forgotten (the event log asked).
    release_4 = {p.name.split(".")[0] for p in (CORPUS / "release-4").glob("*.json")}
    assert (
        release_3
        | {
            "room_finished_mid_call",
            "dispatch_into_a_room_gone",
            "recording_erased_while_uploading",
            "recording_erased_while_waiting_for_ops",
            "line_resent_after_window",
        }
        <= release_4
    )
    # Release 5 (the call pinned, no patches, lines in PostgreSQL): every scenario of release 4
    # on today's code but the forgotten-line check, which the design made unnecessary.
    release_5 = {p.name.split(".")[0] for p in (CORPUS / "release-5").glob("*.json")}
    assert release_4 - {"line_resent_after_window"} <= release_5


def test_call_workflow_corpora_exist_and_hold_call_histories() -> None:
    """A typo in CALL_WORKFLOW_CORPORA would silently replay no call at all."""
    listed = call_corpora()
    assert listed, "CALL_WORKFLOW_CORPORA lists no corpus"
    for corpus in listed:
        assert corpus.is_dir() and corpus.is_relative_to(CORPUS.resolve()), corpus
        calls = [p for p in corpus.glob("*.json") if workflow_type(p) == m.WORKFLOW_CALL]
        assert calls, f"{corpus} holds no CallWorkflow history"
    others = [p for p in ALL_HISTORIES if workflow_type(p) != m.WORKFLOW_CALL]
    assert set(others) <= set(HISTORIES)  # auto-upgrade workflows: every corpus, always


@pytest.mark.parametrize("path", HISTORIES, ids=ids(HISTORIES))
async def test_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[
            CallWorkflow,
            RecordingWorkflow,
            AnalysisWorkflow,
            WebhookWorkflow,
            CallbackWorkflow,
            CampaignWorkflow,
            DeskWorkflow,
        ]
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def encrypt_payloads(node: object, codec: EncryptionCodec) -> None:
    """Encode every payload of an exported history (JSON) as an encrypting cluster holds it:
    inputs, results, signals, updates; search attributes and markers stay as they are."""
    if isinstance(node, list):
        for value in node:
            await encrypt_payloads(value, codec)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
        payload = Payload(
            metadata={k: base64.b64decode(v) for k, v in node["metadata"].items()},
            data=base64.b64decode(node.get("data", "")),
        )
        [enc] = await codec.encode([payload])
        node["metadata"] = {k: base64.b64encode(v).decode() for k, v in enc.metadata.items()}
        node["data"] = base64.b64encode(enc.data).decode()
        return
    for key, value in node.items():
        # Search attributes never go through the codec; markers are read by the SDK's core.
        if key not in ("searchAttributes", "indexedFields", "markerRecordedEventAttributes"):
            await encrypt_payloads(value, codec)


RELEASE_2 = [p for p in HISTORIES if p.parent.name == "release-2"]


@pytest.mark.parametrize("path", RELEASE_2, ids=ids(RELEASE_2))
async def test_encrypted_histories_replay_with_the_production_converter(path: Path) -> None:
    codec = EncryptionCodec([("k1", os.urandom(32))])
    raw = json.loads(path.read_text())
    await encrypt_payloads(raw, codec)
    assert path.read_text() != json.dumps(raw)
    history = WorkflowHistory.from_json(path.stem, json.dumps(raw))
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    replayer = Replayer(workflows=[CallWorkflow, RecordingWorkflow], data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
    # Without the codec the same history cannot even be read: the check is real.
    plain = Replayer(workflows=[CallWorkflow, RecordingWorkflow])
    failed = await plain.replay_workflow(history, raise_on_replay_failure=False)
    assert failed.replay_failure is not None
