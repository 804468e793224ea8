"""The emulator uploads each finished file as LiveKit Egress does: to the request's S3Upload
(devstack's S3, moto here), reporting the location Egress reports for that configuration;
failed uploads end EGRESS_FAILED with Egress's own text or go to the backup storage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from livekit import api
from livekit.protocol import egress as egress_pb

from devstack.livekit import EmulatorConfig, start_emulator
from devstack.livekit.upload import S3Target, s3_location
from tests.fixtures.livekit import API_KEY, API_SECRET

BACKUP = "egress-backup"


@pytest.fixture
async def emulator(s3: Any) -> AsyncIterator[Any]:
    """An emulator as devstack runs it: no debug serving, a backup bucket, webhooks captured."""
    if not s3.client.bucket_exists(BACKUP):
        s3.client.make_bucket(BACKUP)
    config = EmulatorConfig(
        api_key=API_KEY, api_secret=API_SECRET, port=0, webhook_url="",
        egress_start_delay_s=0.05, backup_bucket=BACKUP,
    )  # fmt: skip
    handle = await start_emulator(config)
    try:
        yield handle
    finally:
        await handle.stop()


def _upload(s3: Any, *, path_style: bool = True, bucket: str = "egress") -> egress_pb.S3Upload:
    return egress_pb.S3Upload(
        access_key=s3.access_key, secret=s3.secret_key, region="us-east-1",
        endpoint=f"http://{s3.endpoint}", bucket=bucket, force_path_style=path_style,
    )  # fmt: skip


async def _record(handle: Any, upload: egress_pb.S3Upload | None, key: str) -> Any:
    """Start, record 3 s, stop; the egress as it ended."""
    room = f"call-{uuid.uuid4().hex[:10]}"
    emu = handle.emulator
    async with api.LiveKitAPI(handle.url, API_KEY, API_SECRET) as lk:
        from livekit.protocol import room as room_pb

        await lk.room.create_room(room_pb.CreateRoomRequest(name=room))
        out = egress_pb.EncodedFileOutput(file_type=egress_pb.OGG, filepath=key, s3=upload)
        info = await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room, audio_only=True, file_outputs=[out]
            )
        )
        assert info.room_composite.file_outputs[0].s3.secret in ("", "{redacted}")
        while emu.egresses[info.egress_id].info.status != egress_pb.EGRESS_ACTIVE:
            await asyncio.sleep(0.02)
        emu.advance_egress(info.egress_id, 3)
        await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
        while emu.egresses[info.egress_id].info.status == egress_pb.EGRESS_ENDING:
            await asyncio.sleep(0.02)
        return emu.egresses[info.egress_id].info


async def test_the_file_is_uploaded_where_the_request_says(emulator: Any, s3: Any) -> None:
    key = f"conversations/{uuid.uuid4().hex[:20]}/1.ogg"
    info = await _record(emulator, _upload(s3), key)
    assert info.status == egress_pb.EGRESS_COMPLETE, info.error
    (f,) = info.file_results
    assert (f.filename, f.location) == (key, f"http://{s3.endpoint}/egress/{key}")
    assert s3.client.stat_object("egress", key).size == f.size > 0
    assert not info.backup_storage_used
    # Egress serves nothing itself: the debug route is closed.
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.control_url}/recordings/{info.egress_id}.ogg"
        async with http.get(url) as resp:
            assert resp.status == 404


async def test_virtual_host_location_is_egress_own_format(emulator: Any, s3: Any) -> None:
    key = f"conversations/{uuid.uuid4().hex[:20]}.ogg"
    info = await _record(emulator, _upload(s3, path_style=False), key)
    # livekit/storage formats https://<bucket>.<endpoint>/<key> with the endpoint verbatim.
    assert info.file_results[0].location == f"https://egress.http://{s3.endpoint}/{key}"


def test_location_formats() -> None:
    t = S3Target("", "rec", "us-east-1", False, "a", "b")
    assert s3_location(t, "k.ogg") == "https://rec.s3.amazonaws.com/k.ogg"
    t = S3Target("minio:9000", "rec", "us-east-1", True, "a", "b")
    assert s3_location(t, "k.ogg") == "https://minio:9000/rec/k.ogg"


async def test_a_failed_upload_fails_the_egress_with_egress_text(emulator: Any, s3: Any) -> None:
    emulator.emulator.config.backup_bucket = ""  # no backup storage
    key = f"conversations/{uuid.uuid4().hex[:20]}.ogg"
    info = await _record(emulator, _upload(s3, bucket="no-such-bucket"), key)
    assert info.status == egress_pb.EGRESS_FAILED and not info.file_results
    assert info.error.startswith("S3 upload failed: operation error S3: PutObject")
    assert "NoSuchBucket" in info.error and s3.secret_key not in info.error


async def test_an_injected_upload_failure_goes_to_backup_storage(emulator: Any, s3: Any) -> None:
    emulator.emulator.faults.add({"kind": "egress_upload_fail"})
    key = f"conversations/{uuid.uuid4().hex[:20]}.ogg"
    info = await _record(emulator, _upload(s3), key)
    assert info.status == egress_pb.EGRESS_COMPLETE and info.backup_storage_used
    assert info.file_results[0].location == f"http://{s3.endpoint}/{BACKUP}/{key}"
    assert s3.client.stat_object(BACKUP, key).size == info.file_results[0].size


async def test_primary_and_backup_failing_reports_both(emulator: Any, s3: Any) -> None:
    emulator.emulator.faults.add({"kind": "egress_upload_fail", "backup_error": "no route"})
    info = await _record(emulator, _upload(s3), f"conversations/{uuid.uuid4().hex[:20]}.ogg")
    assert info.status == egress_pb.EGRESS_FAILED
    assert info.error == (
        "primary: S3 upload failed: operation error S3: PutObject, https response error "
        "StatusCode: 403, api error AccessDenied: Access Denied\n"
        "backup: S3 upload failed: no route"
    )


async def test_without_storage_the_location_is_the_local_path(emulator: Any) -> None:
    info = await _record(emulator, None, "conversations/local.ogg")
    assert info.status == egress_pb.EGRESS_COMPLETE
    assert info.file_results[0].location == "conversations/local.ogg"  # as Egress's local storage


async def test_an_unreachable_endpoint_fails_the_egress(emulator: Any, s3: Any) -> None:
    from devstack.services import free_port

    emulator.emulator.config.backup_bucket = ""
    upload = _upload(s3)
    upload.endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    info = await _record(emulator, upload, f"conversations/{uuid.uuid4().hex[:20]}.ogg")
    assert info.status == egress_pb.EGRESS_FAILED
    assert info.error.startswith("S3 upload failed: operation error S3: PutObject")
