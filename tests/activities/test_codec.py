"""The payload codec: AES-GCM with key rotation, and nothing readable left in Temporal."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import models as m
from core.codec import ENCODING, KEY_ID_META, EncryptionCodec, PayloadDecryptError
from core.settings import SettingsError
from core.temporal import connect_temporal, data_converter
from testkit.standins import StandIns
from workflows.call import CallWorkflow
from workflows.recording import RecordingWorkflow

OLD = ("k-old", os.urandom(32))
NEW = ("k-new", os.urandom(32))
SECRET = b'"Zelda Plaintextova, 221B Baker Street"'


def plain(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_round_trip_restores_the_payload_exactly() -> None:
    codec = EncryptionCodec([NEW])
    original = [plain(SECRET), plain(b"42"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    assert all(p.metadata["encoding"] == ENCODING for p in encoded)
    assert await codec.decode(encoded) == original


async def test_encrypted_bytes_do_not_contain_the_plaintext() -> None:
    [enc] = await EncryptionCodec([NEW]).encode([plain(SECRET)])
    blob = enc.SerializeToString()
    assert b"Zelda" not in blob and b"json/plain" not in blob
    # A fresh nonce each time: the same value never encrypts to the same bytes.
    [again] = await EncryptionCodec([NEW]).encode([plain(SECRET)])
    assert again.data != enc.data


async def test_newest_key_encrypts_and_old_keys_still_decrypt() -> None:
    [by_old] = await EncryptionCodec([OLD]).encode([plain(SECRET)])
    rotated = EncryptionCodec([NEW, OLD])
    [by_new] = await rotated.encode([plain(SECRET)])
    assert by_new.metadata[KEY_ID_META] == b"k-new"
    assert by_old.metadata[KEY_ID_META] == b"k-old"
    assert [p.data for p in await rotated.decode([by_old, by_new])] == [SECRET, SECRET]


async def test_unknown_key_id_is_a_clear_error() -> None:
    [enc] = await EncryptionCodec([OLD]).encode([plain(SECRET)])
    with pytest.raises(PayloadDecryptError, match="key id 'k-old'.*not among.*k-new"):
        await EncryptionCodec([NEW]).decode([enc])


async def test_tampered_payload_is_refused() -> None:
    [enc] = await EncryptionCodec([NEW]).encode([plain(SECRET)])
    enc.data = enc.data[:-1] + bytes([enc.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptError, match="failed authentication"):
        await EncryptionCodec([NEW]).decode([enc])


async def test_unencrypted_payloads_pass_through_decode_only_when_allowed() -> None:
    p = plain(b'"not secret"')
    assert await EncryptionCodec([NEW]).decode([p]) == [p]
    [enc] = await EncryptionCodec([NEW]).encode([plain(SECRET)])
    strict = EncryptionCodec([NEW], require_encryption=True)
    assert await strict.decode([enc]) == [plain(SECRET)]
    with pytest.raises(PayloadDecryptError) as err:
        await strict.decode([enc, p])
    assert "payload 2 of 2 is not encrypted (encoding 'json/plain')" in str(err.value)
    assert "PAYLOAD_REQUIRE_ENCRYPTION" in str(err.value)


def test_encryption_is_required_by_default_exactly_when_keys_are_set(make_settings) -> None:  # type: ignore[no-untyped-def]
    key = base64.b64encode(NEW[1]).decode()
    assert not make_settings().require_encryption
    with_keys = make_settings(PAYLOAD_KEYS=f"k-new:{key}")
    assert with_keys.require_encryption
    assert data_converter(with_keys).payload_codec.require_encryption  # type: ignore[union-attr]
    relaxed = make_settings(PAYLOAD_KEYS=f"k-new:{key}", PAYLOAD_REQUIRE_ENCRYPTION=False)
    assert not data_converter(relaxed).payload_codec.require_encryption  # type: ignore[union-attr]
    with pytest.raises(SettingsError, match="PAYLOAD_REQUIRE_ENCRYPTION is malformed"):
        make_settings(PAYLOAD_REQUIRE_ENCRYPTION=True)


async def test_a_worker_refuses_a_plaintext_workflow_input(
    temporal_dev_env: WorkflowEnvironment, make_settings
) -> None:  # type: ignore[no-untyped-def]
    """Someone who reaches Temporal without the key starts a call in plaintext: the worker
    never runs it, and the failed workflow task says why."""
    address = temporal_dev_env.client.service_client.config.target_host
    key = base64.b64encode(NEW[1]).decode()
    client = await connect_temporal(
        make_settings(TEMPORAL_ADDRESS=address, PAYLOAD_KEYS=f"k-new:{key}")
    )
    raw: Client = temporal_dev_env.client
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    fakes = StandIns()
    call_id = m.new_call_id()
    async with Worker(
        client, task_queue=queue, workflows=[CallWorkflow], activities=fakes.activities()
    ):
        handle = await raw.start_workflow(
            m.WORKFLOW_CALL,
            m.CallInput(call_id, customer_name="Mallory", config=m.CallConfig()),
            id=m.call_workflow_id(call_id),
            task_queue=queue,
        )
        failures: list[str] = []
        for _ in range(150):
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failure = event.workflow_task_failed_event_attributes.failure
                    assert failure.message == "Encoded failure"  # encrypted like a payload
                    failures.append(str(await client.data_converter.decode_failure(failure)))
            if failures:
                break
            await asyncio.sleep(0.1)
        await handle.terminate("test over")
    assert failures and "is not encrypted" in failures[0], failures
    assert not fakes.calls  # not one activity ran


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="must be 32 bytes"):
        EncryptionCodec([("short", b"x" * 16)])


def test_data_converter_encrypts_only_when_keys_are_set(make_settings) -> None:  # type: ignore[no-untyped-def]
    assert data_converter(make_settings()).payload_codec is None
    key = base64.b64encode(NEW[1]).decode()
    conv = data_converter(make_settings(PAYLOAD_KEYS=f"k-new:{key}"))
    assert isinstance(conv.payload_codec, EncryptionCodec)
    assert conv.payload_codec.key_id == "k-new"


async def test_connect_names_temporal_address_when_unreachable(make_settings) -> None:  # type: ignore[no-untyped-def]
    from core.temporal import TemporalUnavailable
    from devstack.services import free_port

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalUnavailable, match=f"TEMPORAL_ADDRESS={address}"):
        await connect_temporal(make_settings(TEMPORAL_ADDRESS=address))


async def test_a_call_leaves_no_customer_name_in_temporal_payloads(
    temporal_dev_env: WorkflowEnvironment, make_settings
) -> None:  # type: ignore[no-untyped-def]
    name = "Zelda Plaintextova"
    address = temporal_dev_env.client.service_client.config.target_host
    key = base64.b64encode(NEW[1]).decode()
    settings = make_settings(TEMPORAL_ADDRESS=address, PAYLOAD_KEYS=f"k-new:{key}")
    client = await connect_temporal(settings)
    raw: Client = temporal_dev_env.client  # the same server, without the codec
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    fakes = StandIns()
    call_id = m.new_call_id()
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CallWorkflow, RecordingWorkflow],
        activities=fakes.activities(),
    ):
        handle = await client.start_workflow(
            CallWorkflow.run,
            m.CallInput(call_id, customer_name=name, config=m.CallConfig(livekit_url="ws://x")),
            id=m.call_workflow_id(call_id),
            task_queue=queue,
        )
        grant = await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest(name))
        assert grant.room_name == m.room_name_for(call_id)
        await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("test over", "ops"))
        result = await handle.result()
        assert result.status == m.CallStatus.COMPLETED
        # The encrypting client reads everything back.
        assert (await handle.query(CallWorkflow.get_state)).customer_name == name

    history = await raw.get_workflow_handle(handle.id).fetch_history()
    assert grant.name == name  # the name did travel through
    for event in history.events:
        # Search attributes are indexed, never encoded: CustomerName is in them by design.
        event.workflow_execution_started_event_attributes.ClearField("search_attributes")
        event.upsert_workflow_search_attributes_event_attributes.ClearField("search_attributes")
        blob = event.SerializeToString()
        assert name.encode() not in blob, f"plaintext name in {event.event_type} of the history"
        assert b"json/plain" not in blob, f"unencrypted payload in {event.event_type}"


FAILURE_DETAIL = "Zelda Plaintextova said her card is 4111"


@activity.defn(name="codec_test_refuse")
async def refuse(text: str) -> None:
    raise ApplicationError(f"refused: {text}", type="Refused", non_retryable=True)


@workflow.defn(name="CodecTestFailing", sandboxed=False)
class Failing:
    @workflow.run
    async def run(self, text: str) -> None:
        try:
            await workflow.execute_activity(
                refuse, text, start_to_close_timeout=timedelta(seconds=10)
            )
        except ActivityError as err:
            raise ApplicationError(f"gave up: {text}", type="GaveUp") from err


async def test_failure_messages_in_history_are_encrypted(
    temporal_dev_env: WorkflowEnvironment, make_settings
) -> None:  # type: ignore[no-untyped-def]
    """With PAYLOAD_KEYS, an activity's and a workflow's failure messages (and stack traces)
    are encrypted like payloads: history shows "Encoded failure"; the keys give them back,
    and `ops recordings failed` reads a failed run's reason through them."""
    from ops.recordings import _reason

    address = temporal_dev_env.client.service_client.config.target_host
    key = base64.b64encode(NEW[1]).decode()
    client = await connect_temporal(
        make_settings(TEMPORAL_ADDRESS=address, PAYLOAD_KEYS=f"k-new:{key}")
    )
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Failing], activities=[refuse]):
        handle = await client.start_workflow(
            Failing.run, FAILURE_DETAIL, id=queue, task_queue=queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    raw = await temporal_dev_env.client.get_workflow_handle(queue).fetch_history()
    failures = [
        f
        for e in raw.events
        for f in (
            e.activity_task_failed_event_attributes.failure,
            e.workflow_execution_failed_event_attributes.failure,
        )
        if f.ByteSize()
    ]
    assert len(failures) == 2
    for event in raw.events:
        assert b"Zelda" not in event.SerializeToString(), f"plaintext in {event.event_type}"
    assert {f.message for f in failures} == {"Encoded failure"}
    assert not any(f.stack_trace for f in failures)
    decoded = await client.data_converter.decode_failure(failures[-1])
    assert isinstance(decoded, ApplicationError) and decoded.message == f"gave up: {FAILURE_DETAIL}"
    assert f"refused: {FAILURE_DETAIL}" in str(decoded.__cause__.__cause__)  # type: ignore[union-attr]
    status = WorkflowExecutionStatus.FAILED
    assert await _reason(client, queue, handle.result_run_id or "", status) == (
        f"refused: {FAILURE_DETAIL}"
    )
